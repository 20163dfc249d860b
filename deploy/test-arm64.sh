#!/usr/bin/env bash
# Prove deploy/install.sh and the daemon on arm64 Debian 12 (Bookworm, the base of 64-bit Raspberry
# Pi OS) under qemu-user emulation. For each runtime it unpacks a fresh arm64 rootfs, runs
# install.sh in it (chroot, env -i), then `edge-runtime check`, a short `edge-runtime run` of the
# example config against a mosquitto on the host's loopback (asserting that results arrive), and
# `systemd-analyze verify --root=` on the installed unit.
#
# Emulation proves that things work, never how fast: there are no timing assertions here.
#
# Usage: deploy/test-arm64.sh [--runtime ai-edge-litert|tflite-runtime]... [--jobs N]
#                             [--rebuild-rootfs] [--emulation auto|binfmt|proot] [--keep]
# Runtimes run in parallel (--jobs, default: one per core), each in its own rootfs.
# Environment: ARM64_CACHE_DIR (rootfs tarball + qemu), QEMU_CPU (default cortex-a72 = Pi 4),
#              ARM64_QEMU (a qemu-aarch64 >= 8 to use instead of the downloaded one),
#              ARM64_SOURCE=worktree|HEAD (what of the checkout is installed; default worktree).
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)
# shellcheck source=deploy/arm64/lib.sh
. "$REPO/deploy/arm64/lib.sh"

main() {
    local runtimes=() rebuild=0 keep=0 emulation=${ARM64_EMULATION:-auto} jobs
    jobs=$(nproc)
    while (($#)); do
        case $1 in
            --runtime) runtimes+=("$2"); shift 2 ;;
            --rebuild-rootfs) rebuild=1; shift ;;
            --emulation) emulation=$2; shift 2 ;;
            --jobs) jobs=$2; shift 2 ;;
            --keep) keep=1; shift ;;
            -h|--help) sed -n '2,18p' "$SELF"; exit 0 ;;
            *) die "unknown argument: $1" ;;
        esac
    done
    ((${#runtimes[@]})) || runtimes=(ai-edge-litert tflite-runtime)
    local rt
    for rt in "${runtimes[@]}"; do
        [[ $rt == ai-edge-litert || $rt == tflite-runtime ]] || die "unknown runtime: $rt"
    done
    ((jobs <= ${#runtimes[@]})) || jobs=${#runtimes[@]}
    [[ $(id -u) == 0 ]] || die "needs root (debootstrap, chroot, binfmt_misc)"

    export QEMU_CPU=${QEMU_CPU:-cortex-a72}
    CACHE=${ARM64_CACHE_DIR:-${XDG_CACHE_HOME:-/var/cache}/edge-runtime-arm64}
    mkdir -p "$CACHE"
    WORK=$(mktemp -d /var/tmp/edge-runtime-arm64.XXXXXX)
    # Under proot the rootfs is reached through this host path, also by the service user.
    chmod 0755 "$WORK"
    BINFMT_NAME=edge-runtime-aarch64-$$
    KEEP=$keep
    trap outer_cleanup EXIT
    trap 'exit 130' INT TERM

    local t0=$SECONDS
    step "host tools"
    ensure_host_tools
    step "qemu-aarch64"
    QEMU=$(ensure_qemu)
    log "using $("$QEMU" --version | head -1) with QEMU_CPU=$QEMU_CPU"
    export CACHE WORK QEMU REPO BINFMT_NAME
    setup_emulation "$emulation"
    log "emulation: $EMULATION"
    export EMULATION

    step "rootfs"
    ROOTFS_TAR=$(ensure_rootfs "$rebuild")
    export ROOTFS_TAR
    log "rootfs ready after $((SECONDS - t0))s: $ROOTFS_TAR"

    local failed=() running=0
    for rt in "${runtimes[@]}"; do
        if ((running >= jobs)); then
            wait -n || true
            running=$((running - 1))
        fi
        if ((jobs > 1)); then
            run_runtime "$rt" 2>&1 | sed -u "s/^/[$rt] /" >&2 &
        else
            run_runtime "$rt" &
        fi
        running=$((running + 1))
    done
    wait || true
    for rt in "${runtimes[@]}"; do
        RESULTS+=("$(cat "$WORK/$rt.result" 2>/dev/null || echo "FAIL $rt (no result)")")
        grep -q '^PASS' "$WORK/$rt.result" 2>/dev/null || failed+=("$rt")
    done

    step "summary (total $((SECONDS - t0))s)"
    printf '  %s\n' "${RESULTS[@]}" >&2
    # The one line on stdout, in the form CI logs are read for.
    echo "arm64: $((${#runtimes[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
    ((${#failed[@]} == 0)) || die "failed runtimes: ${failed[*]}"
}

# One runtime in its own mount + pid namespace: when it ends, every mount and every emulated
# process is gone, so the rm -rf in outer_cleanup can never reach the host's /proc or /dev.
run_runtime() {
    local rt=$1 t1=$SECONDS status=PASS
    step "runtime $rt"
    # --kill-child: if unshare is killed (outer_cleanup on SIGINT/SIGTERM), so is everything in
    # the namespace.
    unshare --mount --pid --fork --kill-child --mount-proc --propagation private \
        "$BASH" "$REPO/deploy/arm64/run-runtime.sh" "$rt" &
    echo $! >"$WORK/$rt.pid"
    wait $! || status=FAIL
    rm -f "$WORK/$rt.pid"
    echo "$status $rt ($((SECONDS - t1))s)" >"$WORK/$rt.result"
}

RESULTS=()
main "$@"
