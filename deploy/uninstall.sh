#!/usr/bin/env bash
# Remove what deploy/install.sh installed.
#
#   sudo deploy/uninstall.sh [--purge] [--root DIR]
#
# Without --purge: stops and disables the service, removes the unit and /opt/edge-runtime, and
# keeps /etc/edge-runtime (config), /var/lib/edge-runtime (undelivered results) and the
# edge-runtime user, so a later install.sh picks up where this one left off.
# --purge also removes the config, the state and the user. Mosquitto is never removed: other
# programs may use the broker (apt-get remove mosquitto mosquitto-clients if nothing does).
# --root DIR works on an install made with install.sh --root DIR (no systemctl, no userdel).
set -euo pipefail
# useradd, runuser and friends live in sbin, which `sudo` or `env -i` may leave out of PATH.
export PATH="${PATH:-/usr/bin:/bin}:/usr/local/sbin:/usr/sbin:/sbin"

root=""
purge=0

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "uninstall.sh: error: $*" >&2; exit 2; }
log() { echo "uninstall.sh: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --root=*) root=${1#*=}; shift ;;
        --purge) purge=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

if [ -n "$root" ]; then
    [ -d "$root" ] || die "--root $root: no such directory"
    root=$(cd "$root" && pwd)
    [ "$root" = / ] && root=""
fi
system=1
[ -n "$root" ] && system=0
if [ "$system" = 1 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0 ...), or use --root DIR"
fi

unit=$root/etc/systemd/system/edge-runtime.service
user=edge-runtime

if [ "$system" = 1 ] && [ -d /run/systemd/system ]; then
    if systemctl list-unit-files edge-runtime.service >/dev/null 2>&1; then
        systemctl disable --now edge-runtime.service >/dev/null 2>&1 || true
    fi
elif command -v systemctl >/dev/null 2>&1 && [ -e "$unit" ]; then
    systemctl --root="${root:-/}" disable edge-runtime.service >/dev/null 2>&1 || true
fi
# Whatever systemctl did or could not do: no dangling enablement symlink stays behind.
rm -f "$root/etc/systemd/system/multi-user.target.wants/edge-runtime.service"
rm -f "$unit"
if [ "$system" = 1 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl reset-failed edge-runtime.service >/dev/null 2>&1 || true
fi

# Home Assistant: empty retained discovery removes the device's entities (edge-runtime ha-remove),
# while the program that can do it is still here. A broker that cannot be reached only warns.
config=$root/etc/edge-runtime/config.toml
cli=$root/opt/edge-runtime/venv/bin/edge-runtime
if [ -x "$cli" ] && [ -f "$config" ] && grep -q '^\[homeassistant\]' "$config"; then
    if out=$(timeout 30 "$cli" ha-remove --config "$config" 2>&1); then
        log "$out"
    else
        log "warning: could not remove the Home Assistant entities (${out##*error: });" \
            "delete the device in Home Assistant, or clear its discovery topic on the broker"
    fi
fi

rm -rf "$root/opt/edge-runtime"
log "removed the service and $root/opt/edge-runtime"

if [ "$purge" = 1 ]; then
    # Drop-ins from `systemctl edit edge-runtime` are local configuration too.
    rm -rf "$root/etc/edge-runtime" "$root/var/lib/edge-runtime" \
        "$root/etc/systemd/system/edge-runtime.service.d"
    if [ "$system" = 1 ] && getent passwd "$user" >/dev/null; then
        userdel "$user"
        if getent group "$user" >/dev/null; then groupdel "$user"; fi
    fi
    log "purged the config, the state and the $user user"
else
    log "kept $root/etc/edge-runtime and $root/var/lib/edge-runtime (remove them with --purge)"
fi
