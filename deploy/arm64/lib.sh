# shellcheck shell=bash
# Shared by deploy/test-arm64.sh (host side) and deploy/arm64/run-runtime.sh (inside the private
# mount + pid namespace). Sourced, never run.
shopt -s inherit_errexit
# apt_update, apt_install: wait for a busy apt (EDGE_RUNTIME_APT_WAIT) instead of failing.
# shellcheck source=deploy/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/../apt.sh"

SUITE=bookworm
# Debian suites, to tell the Debian archive among the host's apt sources (third-party repositories
# name their own suites); -updates/-backports of these count, -security does not (another archive).
DEBIAN_SUITES="$SUITE stable oldstable oldoldstable testing unstable sid buster bullseye bookworm trixie forky"

# The Debian archive the host's apt already uses (so a local mirror or proxy configured there is
# used for debootstrap and qemu too): the first http(s) URI of an enabled `deb` entry with a
# Debian suite and the main component, in apt's order: $1/sources.list, then
# $1/sources.list.d/*.list and *.sources (deb822) by name. Prints nothing when there is none.
host_debian_mirror() {
    local etc=${1:-/etc/apt} files=() file
    [[ -f $etc/sources.list ]] && files+=("$etc/sources.list")
    for file in "$etc"/sources.list.d/*; do
        [[ -f $file && ( $file == *.list || $file == *.sources ) ]] && files+=("$file")
    done
    ((${#files[@]})) || return 0
    awk -v suites="$DEBIAN_SUITES" '
        BEGIN { n = split(suites, names, " "); for (i = 1; i <= n; i++) known[names[i]] = 1 }
        function debian(suite,  base) {
            base = suite; sub(/-(updates|backports)$/, "", base)
            return base in known
        }
        function consider(types, uris, suites, components, enabled,  u, s, i, j, nu, ns) {
            if (enabled == "no" || (" " types " ") !~ / deb / || (" " components " ") !~ / main /) return
            nu = split(uris, u, " "); ns = split(suites, s, " ")
            for (i = 1; i <= nu; i++) {
                if (u[i] !~ /^https?:\/\//) continue
                for (j = 1; j <= ns; j++) if (debian(s[j])) { sub(/\/+$/, "", u[i]); print u[i]; found = 1; exit }
            }
        }
        function flush() { if (st_types != "") consider(st_types, st_uris, st_suites, st_comps, st_enabled)
                           st_types = st_uris = st_suites = st_comps = st_enabled = "" }
        FNR == 1 { flush() }
        /^[ \t]*#/ { next }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            field = tolower($1); value = $0; sub(/^[^:]*:[ \t]*/, "", value)
            if (field == "types:") st_types = value
            else if (field == "uris:") st_uris = value
            else if (field == "suites:") st_suites = value
            else if (field == "components:") st_comps = value
            else if (field == "enabled:") st_enabled = tolower(value)
            next
        }
        {
            line = $0; sub(/#.*/, "", line); gsub(/\[[^]]*\]/, " ", line)
            n = split(line, w, " ")
            if (n < 4) next
            comps = w[4]; for (i = 5; i <= n; i++) comps = comps " " w[i]
            consider(w[1], w[2], w[3], comps, "")
        }
        END { if (!found) flush() }
    ' "${files[@]}"
}

# ARM64_MIRROR overrides; empty when neither names one (need_mirror says what to do).
MIRROR=${ARM64_MIRROR:-$(host_debian_mirror /etc/apt)}
need_mirror() {
    [[ -n $MIRROR ]] || die "no Debian archive among the host's apt sources (/etc/apt/sources.list, \
/etc/apt/sources.list.d/*.list, *.sources): set ARM64_MIRROR to a Debian mirror URL"
}
# What a fresh 64-bit Raspberry Pi OS Lite brings that the install depends on. Bump ROOTFS_REV when
# the recipe changes so cached tarballs are rebuilt.
ROOTFS_PACKAGES=python3-venv,python3-pip,ca-certificates,systemd
ROOTFS_REV=1
# qemu 7.2 (Debian 12) segfaults in ai-edge-litert's Interpreter(); 10.0 from bookworm-backports
# works. The package ships static binaries, so it runs on any amd64 host.
QEMU_SOURCE="deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm-backports main"
QEMU_MIN_MAJOR=8
# Environment for everything run in the rootfs: nothing of the host's (pip config, proxies, venvs)
# leaks in. QEMU_CPU must be passed on: qemu reads it from each emulated process's environment.
clean_env() {
    printf '%s\n' PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM=dumb "QEMU_CPU=$QEMU_CPU"
}

log() { printf '[arm64 %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
step() { printf '\n[arm64 %s] ==== %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Install what the host side needs, only when missing (CI machines start without them).
ensure_host_tools() {
    local -A want=([debootstrap]=debootstrap [zstd]=zstd [mosquitto]=mosquitto
        [mosquitto_sub]=mosquitto-clients [unshare]=util-linux [systemd-analyze]=systemd
        [python3]=python3 [git]=git)
    local missing=() tool
    for tool in "${!want[@]}"; do
        command -v "$tool" >/dev/null || missing+=("${want[$tool]}")
    done
    ((${#missing[@]})) || return 0
    log "installing host packages: ${missing[*]}"
    apt_install_fresh "${missing[@]}"
}

qemu_major() { "$1" --version | sed -n '1s/.*version \([0-9]*\)\..*/\1/p'; }

# Print the path of a qemu-aarch64 new enough to run ai-edge-litert. Downloads qemu-user from
# bookworm-backports with a private apt configuration: the host's sources stay untouched.
ensure_qemu() {
    local qemu=${ARM64_QEMU:-$CACHE/qemu/qemu-aarch64}
    if [[ -z ${ARM64_QEMU:-} && ! -x $qemu ]]; then
        need_mirror
        local apt_dir; apt_dir=$(mktemp -d "$WORK/apt.XXXXXX")
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/deb"
        echo "$QEMU_SOURCE" >"$apt_dir/sources.list"
        local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir"
            -o APT::Architecture=amd64 -o APT::Sandbox::User=root -qq)
        log "downloading qemu-user from bookworm-backports"
        apt-get "${opts[@]}" update >&2
        (cd "$apt_dir/deb" && apt-get "${opts[@]}" download qemu-user >&2)
        dpkg-deb -x "$apt_dir"/deb/qemu-user_*.deb "$apt_dir/x"
        mkdir -p "$CACHE/qemu"
        install -m 0755 "$apt_dir/x/usr/bin/qemu-aarch64" "$qemu.part"
        mv "$qemu.part" "$qemu"
        rm -rf "$apt_dir"
    fi
    [[ -x $qemu ]] || die "no qemu-aarch64 at $qemu"
    local major; major=$(qemu_major "$qemu")
    ((major >= QEMU_MIN_MAJOR)) || \
        die "$qemu is qemu $major; ai-edge-litert needs qemu >= $QEMU_MIN_MAJOR under emulation"
    echo "$qemu"
}

# Since Linux 6.7 binfmt_misc handlers live in the superblock of a binfmt_misc mount: when the
# host has none mounted, a handler registered in a private mount namespace vanishes with that
# namespace. So each namespace that runs arm64 code registers its own (ns_binfmt_setup), under a
# name unique to this run and runtime, and drops it on exit in case the host's mount made it
# global. Namespaces of one user namespace share the handlers, so the runtimes running in parallel
# must not share a name: registering it twice at once fails, and the first to end would remove
# the other's. The F flag
# makes the kernel open the interpreter at registration, so the rootfs needs no copy of qemu.
binfmt_rule() {
    local magic='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
    local mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
    printf ':%s:M::%s:%s:%s:OPF' "$BINFMT_NAME" "$magic" "$mask" "$QEMU"
}

binfmt_mount() {
    [[ -e /proc/sys/fs/binfmt_misc/register ]] ||
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null
}

binfmt_register() {
    local dir=/proc/sys/fs/binfmt_misc
    binfmt_mount || return 1
    [[ -e $dir/$BINFMT_NAME ]] || binfmt_rule >"$dir/register" 2>/dev/null || return 1
    grep -qx enabled "$dir/$BINFMT_NAME"
}

binfmt_unregister() {
    local entry=/proc/sys/fs/binfmt_misc/$BINFMT_NAME
    [[ ! -e $entry ]] || echo -1 >"$entry"
}

# This run's handlers: the rootfs build's and each runtime's ($BINFMT_NAME-<runtime>).
binfmt_unregister_all() {
    local entry
    for entry in /proc/sys/fs/binfmt_misc/"$BINFMT_NAME" /proc/sys/fs/binfmt_misc/"$BINFMT_NAME"-*; do
        [[ ! -e $entry ]] || echo -1 >"$entry"
    done
}

# Called first in every private namespace that runs arm64 binaries; the caller's EXIT trap calls
# binfmt_unregister.
ns_binfmt_setup() {
    [[ $EMULATION == binfmt ]] || return 0
    binfmt_register || die "cannot register binfmt_misc handler $BINFMT_NAME"
}

# Set EMULATION to "binfmt" when a throwaway namespace can register a handler, else to "proot"
# (the fallback when binfmt_misc cannot be mounted or written).
setup_emulation() {
    local mode=$1
    if [[ $mode == auto || $mode == binfmt ]]; then
        if unshare --mount --propagation private "$BASH" -c \
            '. "$1"; binfmt_register && binfmt_unregister' sh "$REPO/deploy/arm64/lib.sh"; then
            EMULATION=binfmt
            return
        fi
        [[ $mode == auto ]] || die "cannot register a binfmt_misc handler"
        log "binfmt_misc unavailable, falling back to proot"
    fi
    command -v proot >/dev/null || apt_install_fresh proot
    EMULATION=proot
}

# Run a command inside rootfs ROOT under the clean environment:
#   in_root [--timeout SECONDS] [--exec] ROOT CMD...
# --exec replaces the calling (sub)shell, so `in_root --exec ... &` gives $! = the command's pid.
in_root() {
    local prefix=() run=""
    while [[ $1 == --* ]]; do
        case $1 in
            --timeout) prefix=(timeout "$2"); shift 2 ;;
            --exec) run="exec"; shift ;;
            *) die "in_root: unknown option $1" ;;
        esac
    done
    local root=$1; shift
    local env; mapfile -t env < <(clean_env)
    if [[ $EMULATION == binfmt ]]; then
        $run "${prefix[@]}" chroot "$root" /usr/bin/env -i "${env[@]}" "$@"
    else
        $run "${prefix[@]}" proot -q "$QEMU" -r "$root" -b /dev -b /proc -b /sys -w / \
            /usr/bin/env -i "${env[@]}" "$@"
    fi
}

rootfs_key() {
    printf '%s\n' "$SUITE" arm64 minbase "$ROOTFS_PACKAGES" "$ROOTFS_REV" | sha256sum | cut -c1-12
}

# Print the path of the cached rootfs tarball, building it first when missing (or when asked).
ensure_rootfs() {
    local rebuild=$1 tar; tar="$CACHE/rootfs-$SUITE-arm64-$(rootfs_key).tar.zst"
    if [[ -s $tar && $rebuild == 0 ]]; then
        echo "$tar"
        return
    fi
    log "building arm64 $SUITE rootfs with debootstrap (a few minutes, cached afterwards)"
    local root="$WORK/rootfs-build"
    # debootstrap mounts /proc and /sys in the target: keep those mounts in a private namespace.
    unshare --mount --pid --fork --kill-child --mount-proc --propagation private \
        "$BASH" "$REPO/deploy/arm64/build-rootfs.sh" "$root" >&2
    tar --numeric-owner --xattrs -C "$root" -I 'zstd -T0 -3' -cf "$tar.part" .
    mv "$tar.part" "$tar"
    rm -rf --one-file-system "$root"
    # Older tarballs of a previous recipe are dead weight.
    find "$CACHE" -maxdepth 1 -name "rootfs-*.tar.zst" ! -path "$tar" -delete
    echo "$tar"
}

outer_cleanup() {
    local rc=$? pidfile
    # Interrupted: end the runtimes still running. SIGKILL, because unshare --fork blocks SIGTERM
    # and SIGINT while it waits; --kill-child then takes the whole namespace down with it.
    for pidfile in "${WORK:-/nonexistent}"/*.pid; do
        [[ -e $pidfile ]] && kill -KILL "$(cat "$pidfile")" 2>/dev/null
    done
    wait 2>/dev/null
    # Normally each namespace dropped its handler; this covers one killed before its trap ran.
    if [[ ${EMULATION:-} == binfmt ]]; then
        unshare --mount --propagation private "$BASH" -c '. "$1"; binfmt_mount && binfmt_unregister_all' \
            sh "$REPO/deploy/arm64/lib.sh" || log "could not check binfmt handler $BINFMT_NAME"
    fi
    if [[ -n ${WORK:-} && -d $WORK ]]; then
        if [[ ${KEEP:-0} == 1 ]]; then
            log "kept $WORK"
        else
            # Every mount lived in a namespace that is gone by now; --one-file-system is a second
            # guard against crossing into anything mounted.
            rm -rf --one-file-system "$WORK"
        fi
    fi
    exit "$rc"
}
