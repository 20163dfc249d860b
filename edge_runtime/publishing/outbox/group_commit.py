"""Group commit: results that arrive while a commit (and its fsync) is under way wait, and the
first of their callers commits all of them in the next transaction: N pipelines share the fsyncs
instead of queueing for one each.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from edge_runtime.publishing.outbox.base import Encoder, OutboxError


@dataclass
class Pending:
    """A result waiting for the next group commit."""

    pipeline: str
    topic: str
    qos: int
    encode: Encoder
    seq: int = -1
    done: bool = False
    error: Exception | None = None


class GroupCommit:
    """`submit(items)` returns once a transaction holding every item has ended (or failed)."""

    def __init__(self, commit: Callable[[list[Pending]], None]) -> None:
        self._commit = commit  # one transaction for the batch: sets each item's seq or error
        self._cond = threading.Condition()  # results waiting, and who commits
        self._queue: list[Pending] = []
        self._committing = False

    def submit(self, items: list[Pending]) -> None:
        if not items:
            return
        last = items[-1]
        with self._cond:
            self._queue.extend(items)
            while self._committing and not last.done:
                self._cond.wait()
            if last.done:
                return
            self._committing = True  # this caller commits everything queued so far
            batch, self._queue = self._queue, []
        try:
            self._commit(batch)
        finally:
            with self._cond:
                for queued in batch:
                    if queued.seq < 0 and queued.error is None:  # the commit itself failed
                        queued.error = OutboxError("the commit holding this result failed")
                    queued.done = True
                self._committing = False
                self._cond.notify_all()
