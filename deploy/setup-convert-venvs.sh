#!/usr/bin/env bash
# The converter's worker environments for PyTorch and ONNX input (see README "Converting a model").
# Each framework has a virtualenv of its own; edge-convert runs its workers there:
#   .venv-torch  torch (CPU wheel), litert-torch, ai-edge-quantizer, onnx  ($EDGE_CONVERT_TORCH_PYTHON)
#   .venv-onnx   onnx2tf with its pinned tensorflow 2.19 / numpy 1.26, onnxruntime ($EDGE_CONVERT_ONNX_PYTHON)
# usage: deploy/setup-convert-venvs.sh [torch] [onnx]      (default: both)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(torch onnx)
for name in "${wanted[@]}"; do
    case "$name" in
        torch|onnx) ;;
        *) echo "setup-convert-venvs: unknown environment '$name' (torch, onnx)" >&2; exit 2 ;;
    esac
    venv="$repo/.venv-$name"
    started=$SECONDS
    pip_args=""
    if [ "$name" = torch ] && [ "$(uname -m)" = x86_64 ]; then
        # PyPI's torch wheel for x86_64 pulls GBs of CUDA libraries; PyTorch's CPU index has the
        # same release without them.
        cpu_index=${EDGE_CONVERT_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
        if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=5)' \
                "$cpu_index" >/dev/null 2>&1; then
            pip_args="--extra-index-url $cpu_index"
        else
            # Then pin the release whose CPU wheel pip's find-links hold on this project's CI
            # machines (newer releases from PyPI would bring the CUDA libraries).
            pip_args="torch==${EDGE_CONVERT_TORCH_VERSION:-2.13.0}"
            echo "setup-convert-venvs: $cpu_index not reachable; torch pinned to $pip_args" >&2
        fi
    fi
    EDGE_RUNTIME_VENV="$venv" EDGE_RUNTIME_EXTRAS="$name" EDGE_RUNTIME_PIP_ARGS="$pip_args" \
        bash "$repo/deploy/dev-setup.sh"
    echo "setup-convert-venvs: $venv ready in $((SECONDS - started)) s" >&2
done
