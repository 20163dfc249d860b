"""Run TFLiteConverter in a worker subprocess and turn its crashes into errors.

One worker converts the requested modes in order (TensorFlow is imported once). When it dies
from a signal, the mode it was converting is marked as crashed and a new worker carries on with
the remaining modes.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converters.errors import ConvertError
from converters.progress import Bar, Progress

logger = logging.getLogger(__name__)

STDERR_TAIL_LINES = 8
WORKER_MODULE = "converters._convert_worker"


@dataclass(frozen=True)
class ConversionJob:
    mode: str
    io_type: str


@dataclass
class ConversionOutcome:
    job: ConversionJob
    model_bytes: bytes | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.model_bytes is not None


def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _reader(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the TensorFlow converter crashed ({name})"
    return f"the converter process exited with status {returncode}"


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    useful = [line for line in lines if line.strip() and not line.startswith(("W0000", "I0000"))]
    return "\n".join(useful[-STDERR_TAIL_LINES:])


def convert_all(
    loader: str,
    model_path: Path,
    jobs: list[ConversionJob],
    calibration: np.ndarray | None,
    workdir: Path,
    progress: Progress,
    timeout_s: float,
    command: Sequence[str] = (),
    job_extra: dict[str, Any] | None = None,
) -> list[ConversionOutcome]:
    """Convert `model_path` once per job in worker subprocesses; one outcome per job, in order.

    `command` (interpreter and module) runs another worker speaking the same protocol, e.g. in
    another virtualenv; `job_extra` adds keys to its job file."""
    outcomes = {job.mode: ConversionOutcome(job) for job in jobs}
    calibration_path = None
    if calibration is not None:
        calibration_path = workdir / "calibration.npy"
        np.save(calibration_path, calibration)
    pending = list(jobs)
    attempt = 0
    while pending:
        attempt += 1
        finished = _run_worker(loader, model_path, pending, calibration_path, workdir, attempt,
                               progress, timeout_s, outcomes,
                               tuple(command) or (sys.executable, "-m", WORKER_MODULE),
                               job_extra or {})
        pending = [job for job in pending if job.mode not in finished]
    return [outcomes[job.mode] for job in jobs]


def _run_worker(
    loader: str,
    model_path: Path,
    jobs: list[ConversionJob],
    calibration_path: Path | None,
    workdir: Path,
    attempt: int,
    progress: Progress,
    timeout_s: float,
    outcomes: dict[str, ConversionOutcome],
    command: tuple[str, ...],
    job_extra: dict[str, Any],
) -> set[str]:
    """One worker run; returns the modes it settled (converted, failed or crashed in)."""
    outputs = {job.mode: workdir / f"{job.mode}.tflite" for job in jobs}
    job_file = workdir / f"job-{attempt}.json"
    job_file.write_text(json.dumps({
        "loader": loader,
        "model": str(model_path),
        "workdir": str(workdir),
        "calibration": str(calibration_path) if calibration_path else None,
        "jobs": [{"mode": j.mode, "io_type": j.io_type, "output": str(outputs[j.mode])}
                 for j in jobs],
        **job_extra,
    }))
    stderr_path = workdir / f"worker-{attempt}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    settled: set[str] = set()
    current: str | None = None
    calibrating: Bar | None = None
    lines: queue.Queue[str | None] = queue.Queue()
    with stderr_path.open("wb") as stderr, progress.bar("converting", len(jobs)) as bar:
        process = subprocess.Popen(
            [*command, str(job_file)],
            stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=env, text=True,
        )
        assert process.stdout is not None
        reader = threading.Thread(target=_reader, args=(process.stdout, lines),
                                  name="convert-worker-reader", daemon=True)
        reader.start()
        try:
            while True:
                try:
                    line = lines.get(timeout=timeout_s)
                except queue.Empty:
                    process.kill()
                    what = f"converting --quantize {current}" if current else "loading the model"
                    raise ConvertError(
                        f"{what} made no progress for {timeout_s:.0f} s; stopped it "
                        f"(raise --timeout if the model is large)"
                    ) from None
                if line is None:
                    break
                event = _parse(line)
                if event is None:
                    continue
                kind, mode = event.get("event"), event.get("mode")
                if kind == "fatal":
                    raise ConvertError(str(event.get("message")))
                if kind == "start":
                    current = mode
                    bar.set_description(f"converting {mode}")
                elif kind == "calibrate":
                    if calibrating is None:
                        calibrating = progress.bar(f"calibrating {mode}", event["total"])
                    calibrating.update_to(event["done"])
                if kind in ("done", "error") and calibrating is not None:
                    calibrating.close()
                    calibrating = None
                if kind == "done":
                    outcomes[mode].model_bytes = outputs[mode].read_bytes()
                    settled.add(mode)
                    current = None
                    bar.update_to(len(settled))
                elif kind == "error":
                    outcomes[mode].error = f"conversion failed: {event.get('message')}"
                    settled.add(mode)
                    current = None
                    bar.update_to(len(settled))
        finally:
            if calibrating is not None:
                calibrating.close()
            returncode = process.wait()
            reader.join(timeout=5)
    if returncode != 0 or (current is None and len(settled) < len(jobs)):
        reason = _describe_exit(returncode)
        if current is None:
            # Died before starting a mode (e.g. while loading the model): nothing to retry on.
            tail = _tail(stderr_path)
            raise ConvertError(f"{reason} before converting{': ' + tail if tail else ''}")
        log = stderr_path.read_text(errors="replace") if stderr_path.exists() else ""
        logger.error("worker crashed converting %s; last converter output:\n%s", current,
                     _tail(stderr_path))
        site = crash_site(log)
        outcomes[current].error = (
            f"{reason}{' in ' + site if site else ''} while converting --quantize {current}; "
            f"this graph cannot be converted in this mode"
        )
        settled.add(current)
    return settled


_FRAME = re.compile(r'File "(?P<file>[^"]+)", line \d+ in (?P<function>\S+)')


def crash_site(log: str) -> str | None:
    """'calibrator.py:_feed_tensors' from the innermost frame of faulthandler's dump, if any."""
    _, found, dump = log.rpartition("Current thread")
    match = _FRAME.search(dump) if found else None
    if match is None:
        return None
    return f"{Path(match['file']).name}:{match['function']}"


def _parse(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        logger.debug("worker: %s", line.rstrip())
        return None
    return event if isinstance(event, dict) else None
