#!/usr/bin/env bash
# Debian's opencv-doc: the sample videos the cascade example and the face benches run on
# (/usr/share/doc/opencv-doc/examples/data/Megamind.avi has faces). Idempotent; as root or sudo.
set -euo pipefail
if [ -e /usr/share/doc/opencv-doc/examples/data/Megamind.avi ]; then exit 0; fi
command -v apt-get >/dev/null || { echo "sample-videos: no apt-get; install opencv-doc" >&2; exit 1; }
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
echo "sample-videos: installing Debian's opencv-doc (sample videos)" >&2
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    opencv-doc >/dev/null
