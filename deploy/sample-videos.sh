#!/usr/bin/env bash
# Debian's opencv-doc: the sample videos the cascade example and the face benches run on
# (/usr/share/doc/opencv-doc/examples/data/Megamind.avi has faces). Idempotent; as root or sudo.
set -euo pipefail
# apt_update, apt_install: wait for a busy apt (EDGE_RUNTIME_APT_WAIT) instead of failing.
# shellcheck source=deploy/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
if [ -e /usr/share/doc/opencv-doc/examples/data/Megamind.avi ]; then exit 0; fi
command -v apt-get >/dev/null || { echo "sample-videos: no apt-get; install opencv-doc" >&2; exit 1; }
echo "sample-videos: installing Debian's opencv-doc (sample videos)" >&2
apt_update
apt_install opencv-doc
