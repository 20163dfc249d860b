"""One daemon per outbox: an exclusive lock held for the daemon's whole life.

Two daemons on one outbox would each hand out the next `seq` from their own memory, so one seq
would name two different results (consumers deduplicating on (pipeline, seq) would throw real
results away), and they would share the MQTT client id and knock each other off the broker. The
daemon takes `flock(LOCK_EX | LOCK_NB)` on `<outbox>.lock` before it opens the outbox or connects,
and writes its pid there; a second daemon gets OutboxInUse naming the outbox and that pid. The
kernel drops the lock when the process ends, however it ends, so a crash leaves nothing stale.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)


class OutboxInUse(Exception):
    """Another process holds the outbox's lock."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"outbox {path} is in use by another edge-runtime ({holder}): stop that "
                         "one first, or give this config its own outbox path")
        self.path = path


class OutboxOwner:
    """The held lock; `release()` (or leaving the `with`) gives it up."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> OutboxOwner:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def lock_path(outbox: Path) -> Path:
    return outbox.with_name(outbox.name + ".lock")


def claim(outbox: Path) -> OutboxOwner:
    """Lock `outbox` for this process; OutboxInUse if another process has it.

    Where the lock file cannot be created at all (a read-only folder), the outbox cannot be written
    either and falls back to memory (recovery.py): nothing is shared, so nothing is locked.
    """
    path = lock_path(outbox)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as exc:
        logger.warning("cannot create the outbox lock %s (%s): not locking", path, exc.strerror)
        return OutboxOwner(outbox, None)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise OutboxInUse(outbox, holder) from None
    except OSError as exc:
        os.close(fd)
        logger.warning("cannot lock %s (%s): not locking", path, exc.strerror)
        return OutboxOwner(outbox, None)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return OutboxOwner(outbox, fd)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"
