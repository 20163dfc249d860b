#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up (Debian packages, .venv, extras), then pytest.
# Extra arguments go to pytest, e.g. deploy/run-tests.sh -k config -x
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EDGE_RUNTIME_EXTRAS=${EDGE_RUNTIME_EXTRAS-test,convert,plot} bash "$repo/deploy/dev-setup.sh"

# tflite-runtime 2.14 only exists for Python 3.11 and needs numpy<2, so it lives in a venv of its
# own; the tests run the daemon (and the converter's runtime check) in it to prove both runtimes.
if python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    EDGE_RUNTIME_VENV="$repo/.venv-tflite" EDGE_RUNTIME_EXTRAS=tflite \
        bash "$repo/deploy/dev-setup.sh"
    export EDGE_RUNTIME_TFLITE_PYTHON="$repo/.venv-tflite/bin/python"
    export EDGE_CONVERT_TFLITE_RUNTIME_PYTHON="$EDGE_RUNTIME_TFLITE_PYTHON"
fi

# PyTorch and ONNX input for edge-convert: each framework in the converter's worker virtualenv
# (.venv-torch, .venv-onnx; about 1-2 min each with a warm pip cache). EDGE_CONVERT_FRAMEWORKS=0
# skips them, and the tests that need them say so.
if [ "${EDGE_CONVERT_FRAMEWORKS:-1}" != 0 ]; then
    bash "$repo/deploy/setup-convert-venvs.sh"
    export EDGE_CONVERT_TORCH_PYTHON="$repo/.venv-torch/bin/python"
    export EDGE_CONVERT_ONNX_PYTHON="$repo/.venv-onnx/bin/python"
fi

# A real Home Assistant Core for tests/test_homeassistant_real.py (../shared/ha, where present):
# built once into /var/tmp/ha-harness (about 3-5 minutes cold on 2 cores, then seconds). If it
# cannot be built, the build says why and those tests skip with that reason.
ha_harness="${EDGE_RUNTIME_HA_HARNESS:-$repo/../shared/ha}"
if [ -x "$ha_harness/setup_venv.sh" ]; then
    echo "building the Home Assistant test environment ($ha_harness/setup_venv.sh)" >&2
    "$ha_harness/setup_venv.sh" >/dev/null || echo "Home Assistant environment not built;" \
        "tests/test_homeassistant_real.py will skip" >&2
fi

cd "$repo"
# The set-up above installed every tool whose absence a test would skip for, naming
# deploy/dev-setup.sh: from here such a skip is a failure (tests/strict_skips.py).
export EDGE_RUNTIME_SETUP_DONE=1
exec "${EDGE_RUNTIME_VENV:-$repo/.venv}/bin/python" -m pytest "$@"
