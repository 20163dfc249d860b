"""Subprocess that runs TFLiteConverter: `python -m converters._convert_worker JOB.json`.

The TF converter can crash the whole process on some graphs (TF 2.21 segfaults calibrating a
Keras 3 LSTM for int8), so edge-convert runs it here and turns a crash into an error naming the
mode (see converters.conversion). The job file names the source model, its loader, the
calibration array and the modes to convert in order (and `sparse_weights` for a pruned model,
see converters.modes.configure); each model is written to its own file.
Progress goes out as JSON lines on the original stdout; everything else printed to stdout (the
converter prints) is sent to stderr.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

PROGRESS_EVERY = 10


def _emit(stream: TextIO, **event: Any) -> None:
    stream.write(json.dumps(event) + "\n")
    stream.flush()


def _representative(calibration: Any, mode: str, events: TextIO) -> Any:
    def generate() -> Iterator[list[Any]]:
        total = len(calibration)
        for i in range(total):
            yield [calibration[i : i + 1]]
            done = i + 1
            if done % PROGRESS_EVERY == 0 or done == total:
                _emit(events, event="calibrate", mode=mode, done=done, total=total)

    return generate


def run(job: dict[str, Any], events: TextIO) -> int:
    import numpy as np

    from converters.errors import ConvertError
    from converters.loaders import LOADERS
    from converters.modes import configure

    try:
        source = LOADERS[job["loader"]].load(Path(job["model"]))
    except ConvertError as exc:
        _emit(events, event="fatal", message=str(exc))
        return 2
    calibration = None
    if job.get("calibration"):
        calibration = np.load(job["calibration"]).astype(source.input.dtype, copy=False)
    for item in job["jobs"]:
        mode, io_type = item["mode"], item["io_type"]
        _emit(events, event="start", mode=mode)
        try:
            scratch = Path(tempfile.mkdtemp(prefix=f"convert-{mode}-", dir=job["workdir"]))
            converter = source.make_converter(scratch)
            representative = (
                _representative(calibration, mode, events) if calibration is not None else None
            )
            configure(converter, mode, io_type, representative,
                      bool(job.get("sparse_weights")))
            model_bytes = converter.convert()
        except Exception as exc:  # noqa: BLE001 - the converter raises many types; report, next mode
            traceback.print_exc()
            _emit(events, event="error", mode=mode, message=_summary(exc))
            continue
        Path(item["output"]).write_bytes(model_bytes)
        _emit(events, event="done", mode=mode, size=len(model_bytes))
    return 0


def _summary(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    text = (errors or lines or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {text[:500]}"


def serve(run_job: Callable[[dict[str, Any], TextIO], int], argv: list[str]) -> int:
    """A worker's main: `run_job(JOB.json's content, the event stream)`."""
    # On a crash, the Python stack goes to stderr: the parent names the converter phase from it.
    faulthandler.enable()
    # Keep the event stream clean: whatever the converter prints to stdout goes to stderr.
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    job = json.loads(Path(argv[0]).read_text())
    return run_job(job, events)


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return serve(run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
