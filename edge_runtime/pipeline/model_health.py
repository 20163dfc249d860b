"""A secondary model (a stage's, the escalation model) that fails at run time: down, then
reloaded with backoff, by the thread that uses it.

After a failure the model is down: its caller publishes without it (a stage marks the detections it
would have run on, escalation keeps the pipeline model's answer) until the next attempt is due.
Then `reload()` builds the model's parts again from the config (the file is read and loaded anew,
as a pipeline's reload does) and the next invoke tells whether it works. The delay grows with each
failure in a row ([retry] model) and the first invoke that works resets it. Nothing waits: the
pipeline's results keep flowing while a secondary model is down. Failures are logged rate-limited.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable

from edge_runtime.config.schema import BackoffConfig
from edge_runtime.config.typed import ConfigError
from edge_runtime.model.tflite_model import ModelLoadError
from edge_runtime.supervision.backoff import Backoff
from edge_runtime.ratelimit import RateLimitedLogger

if TYPE_CHECKING:
    from edge_runtime.pipeline.assembly import PipelineParts

logger = logging.getLogger(__name__)

REASON_CHARS = 200  # a failure's message in a payload is cut to this


def reason_of(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    reason = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return reason[:REASON_CHARS]


class ModelHealth:
    """Up, or down until `retry_at`; used by one thread (the one that invokes the model)."""

    def __init__(self, what: str, rebuild: Callable[[], PipelineParts], retry: BackoffConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what  # e.g. "pipeline shapes: stage emotion", for the log
        self._rebuild = rebuild
        self._backoff = Backoff(retry.min_delay, retry.max_delay)
        self._clock = clock
        self.retry_at: float | None = None  # None while up
        self.reason = ""  # why it is down (the last failure), for payloads and the log
        self.reloads = 0  # successful reloads
        self._warn = RateLimitedLogger(logger)  # this model's alone

    @property
    def down(self) -> bool:
        return self.retry_at is not None

    @property
    def state(self) -> str:
        return "reloading" if self.down else "running"

    def failed(self, exc: BaseException) -> None:
        """The model failed: down until the next attempt (logged, rate-limited)."""
        delay = self._backoff.next_delay()
        self.retry_at = self._clock() + delay
        self.reason = reason_of(exc)
        self._warn.warning(f"health-{self.what}", "%s: model failed (%s); reloading it in %.1fs",
                      self.what, self.reason, delay)

    def worked(self) -> None:
        """An invoke worked: the next failure starts the backoff from its minimum again."""
        self._backoff.reset()

    def due(self) -> bool:
        return self.retry_at is not None and self._clock() >= self.retry_at

    def reload(self) -> PipelineParts | None:
        """The model's parts built anew (up again), or None (still down, next attempt later)."""
        try:
            parts = self._rebuild()
        except (ConfigError, ModelLoadError) as exc:
            self.failed(exc)
            return None
        self.retry_at = None
        self.reloads += 1
        logger.info("%s: model reloaded", self.what)
        return parts

    def reload_if_due(self) -> tuple[bool, PipelineParts | None]:
        """(usable now, the new parts when this call reloaded it): up, or reloaded because its
        next attempt is due; down otherwise."""
        if not self.down:
            return True, None
        if not self.due():
            return False, None
        parts = self.reload()
        return parts is not None, parts
