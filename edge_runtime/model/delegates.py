"""Hardware delegates (Coral Edge TPU, vendor libraries), with a logged fallback to the CPU.

A delegate that is configured but unavailable (library not installed, device unplugged, a file
that is not a delegate) must not keep the pipeline down: the model runs on the CPU instead, the
log says why, and `LoadedModel.delegate` (passed on to `PipelineParts.delegate` and
`PipelineStats.delegate`) reports e.g. "cpu (edgetpu unavailable)" for stats and `info`.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.model.runtime import Runtime
from edge_runtime.model.tflite_model import ModelLoadError, TfliteModel

logger = logging.getLogger(__name__)

CPU = "cpu"
# Short names for well-known delegate libraries (the Coral runtime's soname on Linux).
KNOWN_DELEGATES: dict[str, str] = {"edgetpu": "libedgetpu.so.1"}
# Every external delegate library exports this (TFLite's external delegate plugin ABI).
PLUGIN_SYMBOL = "tflite_plugin_create_delegate"


class DelegateUnavailable(RuntimeError):
    """The delegate library or its device cannot be used; the message says why."""


@dataclass(frozen=True)
class LoadedModel:
    model: TfliteModel
    delegate: str  # "cpu", "edgetpu", "/path/lib.so", or "cpu (edgetpu unavailable)"


def delegate_label(spec: str) -> str:
    """The name shown for a delegate setting: "edgetpu" stays, paths show their file name."""
    return spec if spec in KNOWN_DELEGATES else Path(spec).name


def load_delegate(runtime: Runtime, spec: str, options: dict[str, Any] | None = None) -> Any:
    """The runtime's delegate object for `spec` ("edgetpu" or a library path)."""
    library = KNOWN_DELEGATES.get(spec, spec)
    # Check the plugin symbol with ctypes first: the runtimes' load_delegate raises a bare
    # AttributeError for a library that is no delegate (and prints noise from a half-built object).
    try:
        handle = ctypes.CDLL(library)
    except OSError as exc:
        raise DelegateUnavailable(f"cannot load {library}: {exc}") from exc
    if not hasattr(handle, PLUGIN_SYMBOL):
        raise DelegateUnavailable(f"{library} is not a TFLite delegate (no {PLUGIN_SYMBOL})")
    try:
        return runtime.load_delegate(library, options or {})
    except (OSError, ValueError, RuntimeError, AttributeError) as exc:
        # e.g. libedgetpu present but no Edge TPU plugged in
        raise DelegateUnavailable(f"{library}: {str(exc).strip() or type(exc).__name__}") from exc


def load_model(path: Path | str, runtime: Runtime, threads: int = 1,
               delegate: str | None = None) -> LoadedModel:
    """Load a model on `delegate`, else on the CPU (logged); ModelLoadError if even that fails."""
    if not delegate:
        return LoadedModel(TfliteModel(path, runtime, threads=threads), CPU)
    label = delegate_label(delegate)
    try:
        handle = load_delegate(runtime, delegate)
        model = TfliteModel(path, runtime, threads=threads, delegate=handle)
        return LoadedModel(model, label)
    except DelegateUnavailable as exc:
        reason = str(exc)
    except ModelLoadError as exc:
        # The interpreter rejected the delegate (e.g. a model not compiled for the Edge TPU); a
        # file that is broken fails again below, on the CPU, with its own message.
        reason = exc.reason
    logger.warning("delegate %s unavailable, running %s on the CPU: %s", label, Path(path).name,
                   reason)
    model = TfliteModel(path, runtime, threads=threads)
    return LoadedModel(model, f"{CPU} ({label} unavailable)")
