"""The result message: one JSON object per result (its JSON Schema is assembled from the
tasks by payload_schemas.py: `edge-runtime schema result`), and its encoding. A sink that stores
a batch raises EncodeErrors for the results it could not encode."""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any

SCHEMA_VERSION = 1


def utc_timestamp(seconds: float) -> str:
    """ISO 8601 UTC with milliseconds and a Z, e.g. 2026-11-21T10:00:00.123Z."""
    whole, micros = divmod(round(seconds * 1_000_000), 1_000_000)
    return f"{_utc_second(whole)}.{micros // 1000:03d}Z"


@lru_cache(maxsize=8)
def _utc_second(whole_seconds: int) -> str:
    # Formatting the date is most of the cost; a fast pipeline stamps thousands of results with
    # the same second.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole_seconds))


def result_payload(
    *,
    device: str,
    pipeline: str,
    captured: float,
    source: dict[str, Any],
    model: dict[str, Any],
    timing_ms: dict[str, float],
    task_fields: dict[str, Any],
) -> dict[str, Any]:
    """The payload without its `seq`, which the publisher assigns when it accepts the result."""
    body: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "device": device,
        "pipeline": pipeline,
        "seq": None,
        "ts": utc_timestamp(captured),
        "source": source,
        "model": model,
        "timing_ms": {k: round(v, 3) for k, v in timing_ms.items()},
    }
    body.update(task_fields)
    return body


# One encoder for every message: json.dumps with non-default options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode(body: dict[str, Any]) -> bytes:
    return _ENCODER.encode(body).encode("utf-8")


class EncodeErrors(Exception):
    """Results of a batch that could not be encoded (e.g. a NaN score); the others were stored."""

    def __init__(self, stored: list[int], errors: list[Exception]) -> None:
        super().__init__(f"{len(errors)} result(s) could not be encoded: {errors[0]}")
        self.stored = stored  # the seqs of the results that were stored
        self.errors = errors
