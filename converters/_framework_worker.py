"""Run a PyTorch or ONNX model in the virtualenv that holds its framework.

    python _framework_worker.py describe FRAMEWORK MODEL
    python _framework_worker.py run FRAMEWORK MODEL INPUTS.npy OUTPUTS.npz TRANSPOSE
    python _framework_worker.py onnx2tf MODEL OUT_DIR KEEP_INPUT_SHAPE(0|1)

FRAMEWORK is "pytorch" (a torch.export .pt2 file, run by torch) or "onnx" (run by onnxruntime).
`run` with TRANSPOSE "nhwc-to-nchw" takes channel-last inputs (what the device feeds) and hands
the model the same values in its own layout, channels first; with "none" it feeds them as given.
`onnx2tf` writes a SavedModel with
channel-last inputs. Standalone on purpose (numpy and the framework only, no edge-runtime or
TensorFlow import in this interpreter): each framework lives in its own virtualenv
(deploy/setup-convert-venvs.sh). Prints one JSON line; failures are reported as {"error": ...}.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _dims(shape: Any) -> list[int]:
    """-1 for every dimension that is not a fixed integer: ONNX's named or unknown dims, and
    torch.export's symbolic ones (a SymInt is no int, but int() of it gives the example's size,
    which would pass a dynamic height off as fixed)."""
    return [d if isinstance(d, int) else -1 for d in shape]


def _torch_program(path: str) -> Any:
    import torch

    return torch.export.load(path)


def _torch_inputs(program: Any) -> list[dict[str, Any]]:
    user = set(program.graph_signature.user_inputs)
    specs = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            value = node.meta.get("val")
            shape = _dims(value.shape) if value is not None else []
            dtype = str(value.dtype).replace("torch.", "") if value is not None else "float32"
            specs.append({"name": node.name, "shape": shape, "dtype": dtype})
    return specs


def _onnx_session(path: str) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


_ONNX_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16",
               "tensor(double)": "float64", "tensor(int64)": "int64", "tensor(int32)": "int32",
               "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


def describe(framework: str, path: str) -> dict[str, Any]:
    if framework == "pytorch":
        import torch

        program = _torch_program(path)
        return {"inputs": _torch_inputs(program), "version": torch.__version__}
    import onnxruntime

    session = _onnx_session(path)
    return {
        "inputs": [{"name": i.name, "shape": _dims(i.shape), "dtype": _ONNX_TYPES.get(i.type, i.type)}
                   for i in session.get_inputs()],
        "outputs": [o.name for o in session.get_outputs()],
        "version": onnxruntime.__version__,
    }


def _to_source_layout(x: Any, transpose: str) -> Any:
    import numpy as np

    if transpose == "nhwc-to-nchw" and x.ndim == 4:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def run(framework: str, path: str, inputs_path: str, outputs_path: str,
        transpose: str) -> dict[str, Any]:
    import numpy as np

    x = _to_source_layout(np.load(inputs_path, allow_pickle=False), transpose)
    if framework == "pytorch":
        import torch
        from torch.utils import _pytree

        torch.set_num_threads(1)
        module = _torch_program(path).module()
        outs = []
        with torch.no_grad():
            # One sample at a time: an exported program may have a fixed batch of 1.
            for i in range(len(x)):
                result, _ = _pytree.tree_flatten(module(torch.from_numpy(x[i : i + 1])))
                outs.append([r.detach().numpy().astype(np.float32) for r in result])
    else:
        session = _onnx_session(path)
        name = session.get_inputs()[0].name
        outs = [[np.asarray(r, np.float32) for r in session.run(None, {name: x[i : i + 1]})]
                for i in range(len(x))]
    stacked = [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]
    np.savez(outputs_path, *stacked)
    return {"outputs": len(stacked)}


# onnx2tf checks image models (4-D, 3 channels) on sample images it downloads into the working
# folder unless this file is there; nothing may be downloaded, so it gets a local stand-in.
ONNX2TF_SAMPLES = "calibration_image_sample_data_20x128x128x3_float32.npy"


def onnx2tf(path: str, out_dir: str, keep_input_shape: bool) -> dict[str, Any]:
    import numpy as np
    import onnx
    import onnx2tf as converter

    path, out_dir = os.path.abspath(path), os.path.abspath(out_dir)
    names = [i.name for i in onnx.load(path).graph.input]
    os.chdir(os.path.dirname(out_dir))
    rng = np.random.default_rng(0)
    np.save(ONNX2TF_SAMPLES, rng.random((20, 128, 128, 3), dtype=np.float32))
    # Stdout belongs to the JSON answer; onnx2tf prints its progress there.
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        converter.convert(
            input_onnx_file_path=path,
            output_folder_path=out_dir,
            batch_size=1,
            # Inputs that are not images keep their shape ([1, T, F] sensor windows).
            keep_shape_absolutely_input_names=names if keep_input_shape else None,
            output_signaturedefs=True,
            non_verbose=True,
        )
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
    return {"saved_model": out_dir, "version": getattr(converter, "__version__", None)}


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    try:
        if command == "describe":
            result = describe(*args)
        elif command == "run":
            result = run(*args)
        elif command == "onnx2tf":
            result = onnx2tf(args[0], args[1], args[2] == "1")
        else:
            result = {"error": f"unknown command {command!r}"}
    except SystemExit as exc:  # onnx2tf exits on what it cannot convert, after logging why
        result = {"error": f"onnx2tf stopped (exit status {exc.code}); its log is above"}
    except Exception as exc:  # noqa: BLE001 - reported as data: the parent makes it a clear error
        text = str(exc).strip()
        result = {"error": f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:800]}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
