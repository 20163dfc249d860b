#!/usr/bin/env bash
# Idempotent set-up of a development/test machine (Debian or Raspberry Pi OS, as root or with sudo):
# the Debian packages the tests and examples need, a virtualenv at .venv, the package and extras.
#   EDGE_RUNTIME_EXTRAS   extras to install (default: test,convert; "" for the daemon only)
#   EDGE_RUNTIME_VENV     virtualenv folder (default: <repo>/.venv)
#   EDGE_RUNTIME_PIP_ARGS more pip options for the install (e.g. --extra-index-url URL)
#   EDGE_RUNTIME_APT_WAIT seconds to wait for apt while another apt holds its locks (default 600)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${EDGE_RUNTIME_VENV:-$repo/.venv}
extras=${EDGE_RUNTIME_EXTRAS-test,convert}
read -ra apt_packages <<< "${EDGE_RUNTIME_APT_PACKAGES:-}"

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

have mosquitto || apt_packages+=(mosquitto)
have mosquitto_sub || apt_packages+=(mosquitto-clients)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_packages+=(python3-venv)
if [[ ",$extras," == *,test,* ]]; then
    # Deployment tests: shellcheck (install.sh), systemd-analyze and systemd itself (the unit gate
    # and the sandbox tests), python3-apt (Ansible's apt module).
    have shellcheck || apt_packages+=(shellcheck)
    { have systemd-analyze && [ -x /lib/systemd/systemd ]; } || apt_packages+=(systemd)
    /usr/bin/python3 -c 'import apt' >/dev/null 2>&1 || apt_packages+=(python3-apt)
    # Ansible's pip module (tests/test_ansible.py) imports packaging in the system Python, which a
    # fresh Debian lacks.
    /usr/bin/python3 -c 'import packaging' >/dev/null 2>&1 || apt_packages+=(python3-packaging)
    # tests/test_install_system.py builds the service's venv from Debian's Python, as on a Pi.
    /usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_packages+=(python3-venv)
    # Input tests: ffmpeg writes each format of the command source from files; alsa-utils ships
    # the spoken-word recordings under /usr/share/sounds/alsa (and arecord).
    have ffmpeg || apt_packages+=(ffmpeg)
    # tests/test_outbox.py counts the outbox's fsync calls with strace.
    have strace || apt_packages+=(strace)
    [ -e /usr/share/sounds/alsa/Front_Center.wav ] || apt_packages+=(alsa-utils)
    # Network camera tests (tests/test_stream_source.py): an RTSP server on loopback, GStreamer's
    # gst-rtsp-server driven from Debian's Python (tests/rtsp_server.py): videotestsrc, jpegenc,
    # rtpjpegpay, and x264enc (plugins-ugly) for H.264 as IP cameras send it.
    /usr/bin/python3 -c 'import sys, gi; gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0"); from gi.repository import Gst; Gst.init(None)
sys.exit(not all(map(Gst.ElementFactory.find, ("jpegenc", "rtpjpegpay", "x264enc"))))' \
        >/dev/null 2>&1 \
        || apt_packages+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \
                          gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly)
fi
# apt_update, apt_install: wait for a busy apt (EDGE_RUNTIME_APT_WAIT) instead of failing.
# shellcheck source=deploy/apt.sh
. "$repo/deploy/apt.sh"
if [ ${#apt_packages[@]} -gt 0 ]; then
    echo "dev-setup: installing Debian packages: ${apt_packages[*]}" >&2
    apt_update
    apt_install "${apt_packages[@]}"
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "dev-setup: creating virtualenv $venv" >&2
    python3 -m venv "$venv"
fi
# pip runs only when what it would install changed: the stamp in the venv records pyproject.toml's
# hash and the pip options of the last install (line 1), and the extras installed since (line 2).
# Extras accumulate: after deploy/run-tests.sh (test,convert,plot), deploy/quickstart.sh (no
# extras) finds the venv up to date, and the other way round installs only once. The install is
# editable, so code changes need no re-run.
stamp="$venv/.edge-runtime-dev-setup"
key="$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1) pip_args=[${EDGE_RUNTIME_PIP_ARGS:-}]"
installed=""
if [ -f "$stamp" ] && [ "$(sed -n 1p "$stamp")" = "$key" ] && [ -x "$venv/bin/edge-runtime" ]; then
    installed=$(sed -n 2p "$stamp")
    have_all=1
else
    have_all=0
fi
IFS=, read -ra wanted <<< "$extras"
for extra in "${wanted[@]}"; do
    [[ ",$installed," == *,"$extra",* ]] || have_all=0
done
if [ "$have_all" = 1 ]; then
    echo "dev-setup: $venv is up to date (pyproject.toml and pip options unchanged;" \
        "extras installed: [$installed])" >&2
else
    all_extras=$(printf '%s,%s' "$installed" "$extras" | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    target="$repo"
    [ -n "$all_extras" ] && target="${repo}[$all_extras]"
    echo "dev-setup: installing edge-runtime${all_extras:+ with extras [$all_extras]} into $venv" >&2
    # PYTHONWARNINGS: setuptools' "Editable installation ... Please be careful" notice is
    # information only (a folder named like a package in the working directory would shadow it;
    # none does), shown by pip in a warning box that reads like a failure.
    # shellcheck disable=SC2086 # EDGE_RUNTIME_PIP_ARGS is a list of options
    PYTHONWARNINGS="ignore:Editable installation." \
        "$venv/bin/python" -m pip install -q --disable-pip-version-check ${EDGE_RUNTIME_PIP_ARGS:-} -e "$target"
    # setuptools' scratch metadata (the venv has its own copy): the checkout stays as it was.
    rm -rf "$repo"/*.egg-info
    printf '%s\n%s\n' "$key" "$all_extras" > "$stamp"
fi
if [[ ",$extras," == *,test,* ]]; then
    # ansible-core for tests/test_ansible.py, in its own virtualenv so that its dependencies never
    # mix with the project's.
    ansible_venv=${EDGE_RUNTIME_ANSIBLE_VENV:-$repo/.venv-ansible}
    if [ ! -x "$ansible_venv/bin/ansible-playbook" ]; then
        echo "dev-setup: installing ansible-core into $ansible_venv" >&2
        python3 -m venv "$ansible_venv"
        "$ansible_venv/bin/python" -m pip install -q --disable-pip-version-check ansible-core
    fi
fi
