"""Choosing the TFLite runtime at run time: one code path for every runtime we support.

ai-edge-litert (a dependency of edge-runtime, so always there) and tflite-runtime (the `tflite`
extra, Python 3.11) expose the same `Interpreter` and `load_delegate` API, so the rest of the
daemon never knows which one it got. TensorFlow is not a runtime of the daemon: it used to be a
last resort here, but `tf.lite.Interpreter` is gone since TensorFlow 2.20 (the convert extra
pins 2.21), so that fallback could only fail, and the daemon never imports TensorFlow
(tests/test_no_tensorflow.py runs it and watches every import).
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

logger = logging.getLogger(__name__)

BACKEND_ENV = "EDGE_RUNTIME_BACKEND"
AUTO = "auto"

# name -> (module holding Interpreter, distribution name for the version)
_BACKENDS: dict[str, tuple[str, str]] = {
    "ai-edge-litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite-runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
}
BACKEND_NAMES = tuple(_BACKENDS)


class RuntimeUnavailable(RuntimeError):
    """No TFLite runtime could be imported (or the one asked for is missing)."""


@dataclass(frozen=True)
class Runtime:
    name: str
    version: str
    interpreter_class: Callable[..., Any]
    load_delegate: Callable[..., Any]

    def describe(self) -> str:
        return f"{self.name} {self.version}"


def _import_backend(name: str) -> Runtime:
    module_name, dist = _BACKENDS[name]
    module = importlib.import_module(module_name)
    interpreter_class, load_delegate = module.Interpreter, module.load_delegate
    # Both packages say their version; importlib.metadata (0.8 MB of RSS) only if one does not.
    version = getattr(importlib.import_module(module_name.partition(".")[0]), "__version__", None)
    if not isinstance(version, str):
        from importlib import metadata

        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "unknown"
    return Runtime(name, version, interpreter_class, load_delegate)


def select_runtime(preferred: str = AUTO) -> Runtime:
    """The runtime to use: `preferred`, else $EDGE_RUNTIME_BACKEND, else the first importable."""
    if preferred == AUTO:
        preferred = os.environ.get(BACKEND_ENV, AUTO) or AUTO
    if preferred != AUTO:
        if preferred not in _BACKENDS:
            raise RuntimeUnavailable(
                f"unknown runtime {preferred!r}; choose one of {', '.join((AUTO,) + BACKEND_NAMES)}"
            )
        try:
            return _import_backend(preferred)
        except ImportError as exc:
            raise RuntimeUnavailable(f"runtime {preferred!r} is not installed ({exc})") from exc
    errors = []
    for name in BACKEND_NAMES:
        try:
            return _import_backend(name)
        except ImportError as exc:  # numpy ABI mismatches also surface as ImportError
            errors.append(f"{name}: {exc}")
    raise RuntimeUnavailable(
        "no TFLite runtime found; install ai-edge-litert (pip install ai-edge-litert). Tried: "
        + "; ".join(errors)
    )
