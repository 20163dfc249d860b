#!/usr/bin/env bash
# Install (or upgrade in place) edge-runtime as a systemd service, from this checkout.
#
#   sudo deploy/install.sh [--with-broker] [--runtime auto|ai-edge-litert|tflite-runtime]
#                          [--device-id ID] [--python PYTHON] [--no-start] [--root DIR]
#
# Idempotent: a second run upgrades the package in place, refreshes the unit and the bundled
# examples, and keeps /etc/edge-runtime/config.toml and /var/lib/edge-runtime untouched.
#
#   /opt/edge-runtime/venv        virtualenv with the package (PEP 668: nothing goes into the
#                                 system Python)
#   /opt/edge-runtime/examples    the bundled example models and inputs
#   /etc/edge-runtime/            config.toml (from deploy/config.example.toml, only when absent),
#                                 environment (EDGE_RUNTIME_BACKEND; rewritten by every run)
#   /var/lib/edge-runtime/        state (outbox), owned by the edge-runtime user
#   /etc/systemd/system/edge-runtime.service
#
# --root DIR installs into DIR instead of / (tests, image builds): no apt-get, no user or group
# changes, no chown, no systemctl; the virtualenv is built in DIR/opt/edge-runtime/venv.
# pip honours its usual configuration (PIP_* variables, /etc/pip.conf, ~/.config/pip/pip.conf),
# so an index mirror or a CA bundle set there is used; this script names no index itself.
set -euo pipefail
# useradd, runuser and friends live in sbin, which `sudo` or `env -i` may leave out of PATH.
export PATH="${PATH:-/usr/bin:/bin}:/usr/local/sbin:/usr/sbin:/sbin"
umask 022

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=""
with_broker=0
runtime=auto
device_id=""
python=python3
start=1

usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: error: $*" >&2; exit 2; }
log() { echo "install.sh: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --root=*) root=${1#*=}; shift ;;
        --with-broker) with_broker=1; shift ;;
        --runtime) runtime=${2:?--runtime needs a value}; shift 2 ;;
        --runtime=*) runtime=${1#*=}; shift ;;
        --device-id) device_id=${2:?--device-id needs a value}; shift 2 ;;
        --device-id=*) device_id=${1#*=}; shift ;;
        --python) python=${2:?--python needs an interpreter}; shift 2 ;;
        --python=*) python=${1#*=}; shift ;;
        --no-start) start=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

case "$runtime" in
    auto|ai-edge-litert|tflite-runtime) ;;
    *) die "--runtime must be auto, ai-edge-litert or tflite-runtime (got '$runtime')" ;;
esac
if [ -n "$device_id" ] && ! [[ "$device_id" =~ ^[A-Za-z0-9._-]+$ ]]; then
    die "--device-id may only contain letters, digits, '.', '_' and '-' (it is part of MQTT topics)"
fi
if [ -n "$root" ]; then
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
    [ "$root" = / ] && root=""
fi
system=1  # touch the running system: apt, users, ownership, systemctl
[ -n "$root" ] && system=0
if [ "$system" = 1 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0 ...), or use --root DIR"
fi

opt=$root/opt/edge-runtime
venv=$opt/venv
etc=$root/etc/edge-runtime
state=$root/var/lib/edge-runtime
unit_dir=$root/etc/systemd/system
user=edge-runtime

# --- Debian packages ---------------------------------------------------------------------------
# apt_install_fresh: waits for a busy apt (EDGE_RUNTIME_APT_WAIT) instead of failing.
# shellcheck source=deploy/apt.sh
. "$repo/deploy/apt.sh"
if [ "$system" = 1 ] && command -v apt-get >/dev/null 2>&1; then
    packages=()
    command -v "$python" >/dev/null 2>&1 || packages+=(python3)
    # Debian splits venv/ensurepip out of python3; without it `python3 -m venv` fails.
    "$python" -c 'import ensurepip, venv' >/dev/null 2>&1 || packages+=(python3-venv)
    if [ "$with_broker" = 1 ]; then
        packages+=(mosquitto mosquitto-clients)
    fi
    if [ ${#packages[@]} -gt 0 ]; then
        log "installing Debian packages: ${packages[*]}"
        apt_install_fresh "${packages[@]}"
    fi
elif [ "$with_broker" = 1 ]; then
    log "--with-broker: no apt-get here (or --root): install mosquitto and mosquitto-clients yourself"
fi

command -v "$python" >/dev/null 2>&1 || die "no Python interpreter '$python'"
py_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$py_version" in
    3.1[1-9]) ;;
    *) die "Python $py_version is too old: edge-runtime needs 3.11 or newer" ;;
esac

# --- runtime: ai-edge-litert has wheels for 64-bit ARM and x86 on Python 3.11+; tflite-runtime is
# the fallback for 32-bit ARM, and only exists for Python <= 3.11 ---------------------------------
if [ "$runtime" = auto ]; then
    case "$(uname -m)" in
        armv7l|armv6l|armhf) runtime=tflite-runtime ;;
        *) runtime=ai-edge-litert ;;
    esac
fi
# pip builds a local folder in place (build/ and *.egg-info beside the sources): it builds a copy of
# the package's sources instead, so the checkout stays as it was.
src=$(mktemp -d "${TMPDIR:-/tmp}/edge-runtime-src.XXXXXX")
trap 'rm -rf "$src"' EXIT
tar -C "$repo" --exclude=__pycache__ -cf - pyproject.toml README.md edge_runtime converters | tar -C "$src" -xf -
case "$runtime" in
    ai-edge-litert) spec=$src ;;
    tflite-runtime)
        [ "$py_version" = 3.11 ] || die "tflite-runtime has no wheels for Python $py_version; use --runtime ai-edge-litert"
        spec="${src}[tflite]" ;;
    *) die "--runtime must be auto, ai-edge-litert or tflite-runtime (got '$runtime')" ;;
esac

# --- user and groups ---------------------------------------------------------------------------
if [ "$system" = 1 ]; then
    if ! getent passwd "$user" >/dev/null; then
        log "creating system user $user"
        useradd --system --user-group --home-dir /var/lib/edge-runtime --no-create-home \
            --shell /usr/sbin/nologin --comment "edge-runtime daemon" "$user"
    fi
    # Device groups that exist on this image (Raspberry Pi OS has all of them, plain Debian only
    # video, dialout and audio). The unit lists only those three (base-passwd's static groups): a
    # missing group there stops the start.
    for group in video gpio i2c spi dialout audio; do
        if getent group "$group" >/dev/null && ! id -nG "$user" | tr ' ' '\n' | grep -qx "$group"; then
            usermod -a -G "$group" "$user"
        fi
    done
fi

# --- folders -----------------------------------------------------------------------------------
mkdir -p "$opt" "$etc" "$state" "$unit_dir"
chmod 0750 "$etc" "$state"
if [ "$system" = 1 ]; then
    chown root:"$user" "$etc"
    chown "$user":"$user" "$state"
fi

# --- virtualenv and package --------------------------------------------------------------------
# A venv is tied to the Python that made it: rebuild it when the OS upgrade changed Python
# (Bookworm 3.11 -> Trixie 3.13) or the venv is broken, else upgrade in place.
if [ -x "$venv/bin/python" ]; then
    venv_version=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo broken)
    if [ "$venv_version" != "$py_version" ]; then
        log "virtualenv is Python $venv_version, system is $py_version: rebuilding it"
        rm -rf "$venv"
    fi
fi
if [ ! -x "$venv/bin/python" ]; then
    log "creating virtualenv $venv (Python $py_version)"
    "$python" -m venv "$venv"
fi
log "installing edge-runtime ($runtime) from $repo into $venv"
# --upgrade: a second run replaces the package with this checkout's; dependencies only move when
# the new version needs it. pip reads its own config (index, certificates) from the usual places.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$spec"
if [ "$runtime" = ai-edge-litert ]; then
    # Switching back from tflite-runtime: drop the legacy runtime so "auto" cannot pick it.
    "$venv/bin/python" -m pip uninstall --quiet --yes tflite-runtime >/dev/null 2>&1 || true
fi
"$venv/bin/edge-runtime" --version >/dev/null

# --- examples, docs ------------------------------------------------------------------------------
# Ours, not the user's: replaced on every run so an upgrade brings the new example models.
rm -rf "$opt/examples.new"
mkdir -p "$opt/examples.new"
for example in digits vibration; do
    [ -d "$repo/examples/$example" ] && cp -R "$repo/examples/$example" "$opt/examples.new/"
done
rm -rf "$opt/examples"
mv "$opt/examples.new" "$opt/examples"
cp "$repo/README.md" "$opt/README.md"

# --- configuration -----------------------------------------------------------------------------
config=$etc/config.toml
if [ -e "$config" ]; then
    log "keeping existing $config"
else
    log "writing $config from deploy/config.example.toml"
    tmp=$(mktemp "$etc/.config.toml.XXXXXX")
    if [ -n "$device_id" ]; then
        sed "s|^# id = \"kitchen-pi\" .*|id = \"$device_id\"|" "$repo/deploy/config.example.toml" > "$tmp"
    else
        cp "$repo/deploy/config.example.toml" "$tmp"
    fi
    chmod 0640 "$tmp"
    mv "$tmp" "$config"
fi
cat > "$etc/environment" <<EOF
# Written by deploy/install.sh on every run (--runtime); read by edge-runtime.service.
EDGE_RUNTIME_BACKEND=$runtime
EOF
chmod 0640 "$etc/environment"
if [ "$system" = 1 ]; then
    chown root:"$user" "$config" "$etc/environment"
fi

# --- systemd unit --------------------------------------------------------------------------------
# Replaced on every run; local changes belong in a drop-in (systemctl edit edge-runtime).
install -m 0644 "$repo/systemd/edge-runtime.service" "$unit_dir/edge-runtime.service"

if [ "$system" = 1 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$with_broker" = 1 ]; then
        systemctl enable --now mosquitto.service
    fi
    systemctl enable edge-runtime.service >/dev/null
    if [ "$start" = 1 ]; then
        # Validate as the service user before (re)starting: a broken config keeps the old process.
        if runuser -u "$user" -- env EDGE_RUNTIME_BACKEND="$runtime" \
                "$venv/bin/edge-runtime" check --config "$config" >/dev/null; then
            systemctl restart edge-runtime.service
            log "started: systemctl status edge-runtime; journalctl -u edge-runtime -f"
        else
            log "$config does not pass 'edge-runtime check': fix it, then systemctl restart edge-runtime"
            exit 1
        fi
    fi
elif command -v systemctl >/dev/null 2>&1; then
    # No systemd running (--root, a chroot, an image build): enable offline, which only makes
    # the multi-user.target.wants symlink; the service starts on the device's next boot.
    systemctl --root="${root:-/}" enable edge-runtime.service >/dev/null 2>&1 \
        || log "could not enable the unit offline: run 'systemctl enable edge-runtime' on the device"
fi
log "done: edge-runtime $("$venv/bin/edge-runtime" --version | awk '{print $2}') ($runtime) in $venv"
