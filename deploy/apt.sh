# shellcheck shell=bash
# apt-get for the set-up scripts (dev-setup.sh, sample-videos.sh, arm64/lib.sh) and install.sh:
# sourced, never run. apt may be busy: another apt-get, or unattended-upgrades on a Pi's first
# boot. These wait for it (up to APT_WAIT seconds) instead of failing with "Could not get lock":
# DPkg::Lock::Timeout covers the dpkg locks; `apt-get update`'s lists lock has no timeout in
# apt 2.6, so it is retried. As root, or through sudo.
#   EDGE_RUNTIME_APT_WAIT seconds to wait for apt while another apt holds its locks (default 600)
APT_WAIT=${EDGE_RUNTIME_APT_WAIT:-600}
apt_sudo=()
if [ "$(id -u)" -ne 0 ]; then apt_sudo=(sudo); fi

# apt_update: `apt-get update -qq`, retried while another apt holds the lists lock.
apt_update() {
    local waited=0 out
    until out=$("${apt_sudo[@]}" apt-get update -qq 2>&1); do
        if [[ "$out" != *"Could not get lock"* ]] || [ "$waited" -ge "$APT_WAIT" ]; then
            echo "$out" >&2
            return 1
        fi
        [ "$waited" = 0 ] && echo "${0##*/}: apt is busy (${out%%$'\n'*}); waiting" >&2
        sleep 2
        waited=$((waited + 2))
    done
}

# apt_install PACKAGE...: install without recommends, quietly, waiting for the dpkg lock.
apt_install() {
    DEBIAN_FRONTEND=noninteractive "${apt_sudo[@]}" apt-get -o DPkg::Lock::Timeout="$APT_WAIT" \
        install -y -qq --no-install-recommends "$@" >/dev/null
}

# apt_install_fresh PACKAGE...: apt_install; if apt cannot find a package (its lists are out of
# date, or a fresh image has none yet), apt_update and install again.
apt_install_fresh() {
    apt_install "$@" 2>/dev/null || { apt_update && apt_install "$@"; }
}
