#!/usr/bin/env bash
# A bench/example-only virtualenv with Google's mediapipe 0.10.21 (its own face detection solution,
# the reference the project's detector is compared with) and scikit-image (face photos).
# mediapipe is NEVER a dependency of the daemon or the converter: mediapipe 0.10.21 requires
# numpy<2 and protobuf<5, the convert extra (tensorflow 2.21) numpy>=2 and protobuf>=5, so it
# lives in a virtualenv of its own.
#   usage: bash deploy/mediapipe-venv.sh            -> <repo>/.venv-mediapipe
#          EDGE_RUNTIME_MEDIAPIPE_VENV=/some/dir bash deploy/mediapipe-venv.sh
# Needs Python 3.9-3.12 (mediapipe 0.10.21 wheels: cp39-cp312, x86_64 and aarch64).
# The venv also gets edge-runtime itself (no extras), so a bench can run the project's decoder and
# mediapipe's solution side by side in one process.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${EDGE_RUNTIME_MEDIAPIPE_VENV:-$repo/.venv-mediapipe}
python=${EDGE_RUNTIME_MEDIAPIPE_PYTHON:-python3}

if ! "$python" -c 'import sys; sys.exit(not ((3, 9) <= sys.version_info[:2] <= (3, 12)))'; then
    echo "mediapipe-venv: mediapipe 0.10.21 needs Python 3.9-3.12; set EDGE_RUNTIME_MEDIAPIPE_PYTHON" >&2
    exit 2
fi
bash "$repo/deploy/sample-videos.sh"  # Debian's opencv-doc: Megamind.avi has faces
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import mediapipe, skimage, edge_runtime' 2>/dev/null; then
    echo "mediapipe-venv: $venv is ready" >&2
    exit 0
fi
echo "mediapipe-venv: creating $venv" >&2
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" --upgrade pip
# numpy<2 and the OpenCV that goes with it, for edge-runtime and mediapipe alike.
"${pip[@]}" "mediapipe==0.10.21" "numpy<2" "opencv-python-headless<4.12" "scikit-image<0.25"
"${pip[@]}" --no-deps -e "$repo"
"${pip[@]}" "paho-mqtt>=2.0,<3" "ai-edge-litert>=1.2" "pyserial>=3.5"  # the rest of its dependencies
"$venv/bin/python" -c 'import mediapipe, numpy; print("mediapipe-venv: mediapipe", mediapipe.__version__, "numpy", numpy.__version__)' >&2
