#!/usr/bin/env bash
# Build the arm64 Bookworm rootfs at $1. Run by deploy/test-arm64.sh inside a private mount + pid
# namespace, so the /proc and /sys that debootstrap mounts in the target die with it.
set -euo pipefail
root=$1
. "$REPO/deploy/arm64/lib.sh"

need_mirror
ns_binfmt_setup
trap binfmt_unregister EXIT
mkdir -p "$root"
args=(--arch=arm64 --variant=minbase "--include=$ROOTFS_PACKAGES")
if [[ $EMULATION == binfmt ]]; then
    debootstrap "${args[@]}" "$SUITE" "$root" "$MIRROR"
else
    # proot cannot host debootstrap's chroot calls: unpack on the host, configure under proot.
    debootstrap --foreign "${args[@]}" "$SUITE" "$root" "$MIRROR"
    in_root "$root" /debootstrap/debootstrap --second-stage
fi
# The test never uses apt inside: drop the package cache and lists (a third of the size).
in_root "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/*
