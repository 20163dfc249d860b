"""Run a .tflite file on one TFLite runtime, in whatever Python environment holds that runtime.

    python _runtime_probe.py RUNTIME MODEL INPUTS.npy OUTPUTS.npz

Standalone on purpose (numpy and the runtime only, no edge-runtime import): tflite-runtime 2.14
needs numpy < 2, so it lives in its own virtualenv. Prints one JSON line: the runtime version,
or the error that stopped it.
"""

from __future__ import annotations

import json
import sys
import time

MODULES = {
    "ai-edge-litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite-runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
}


def main(argv: list[str]) -> int:
    runtime, model_path, inputs_path, outputs_path = argv
    module_name, dist = MODULES[runtime]
    result: dict[str, object] = {"runtime": runtime}
    try:
        import importlib
        from importlib import metadata

        import numpy as np

        module = importlib.import_module(module_name)
        result["version"] = metadata.version(dist)
        result["python"] = sys.version.split()[0]
        result["numpy"] = np.__version__
        with open(model_path, "rb") as handle:
            interpreter = module.Interpreter(model_content=handle.read(), num_threads=1)
        interpreter.allocate_tensors()
        inputs = np.load(inputs_path, allow_pickle=False)
        input_index = interpreter.get_input_details()[0]["index"]
        output_indices = [d["index"] for d in interpreter.get_output_details()]
        outputs: list[list[object]] = [[] for _ in output_indices]
        times = []
        for sample in inputs:
            interpreter.set_tensor(input_index, sample[None])
            start = time.perf_counter()
            interpreter.invoke()
            times.append(time.perf_counter() - start)
            for k, index in enumerate(output_indices):
                outputs[k].append(interpreter.get_tensor(index)[0])
        np.savez(outputs_path, *[np.stack(o) for o in outputs])
        result["latency_ms"] = float(np.median(times) * 1000.0)
    except Exception as exc:  # noqa: BLE001 - reported as data: the parent decides what it means
        text = str(exc).strip()
        result["error"] = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:500]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
