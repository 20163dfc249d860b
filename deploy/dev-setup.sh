#!/usr/bin/env bash
# Idempotent set-up of a development/test machine (Debian or Raspberry Pi OS, as root or with sudo):
# the Debian packages the tests and examples need, a virtualenv at .venv, the package and extras.
#   EDGE_RUNTIME_EXTRAS   extras to install (default: test,convert; "" for the daemon only)
#   EDGE_RUNTIME_VENV     virtualenv folder (default: <repo>/.venv)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${EDGE_RUNTIME_VENV:-$repo/.venv}
extras=${EDGE_RUNTIME_EXTRAS-test,convert}
apt_packages=(${EDGE_RUNTIME_APT_PACKAGES:-})

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

have mosquitto || apt_packages+=(mosquitto)
have mosquitto_sub || apt_packages+=(mosquitto-clients)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_packages+=(python3-venv)
if [ ${#apt_packages[@]} -gt 0 ]; then
    echo "dev-setup: installing Debian packages: ${apt_packages[*]}" >&2
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
        "${apt_packages[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "dev-setup: creating virtualenv $venv" >&2
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
target="$repo"
[ -n "$extras" ] && target="$repo[$extras]"
echo "dev-setup: installing edge-runtime${extras:+ with extras [$extras]} into $venv" >&2
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$target"
