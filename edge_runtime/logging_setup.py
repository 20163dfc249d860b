"""Logging set-up for a terminal and for the systemd journal.

Under systemd, stderr is a stream into journald, which $JOURNAL_STREAM announces ("dev:inode" of
that stream). journald stamps every line itself and reads a leading "<N>" as the syslog priority,
and it stores each line as a separate entry. So there we print no timestamp, prefix the priority
(so `journalctl -p warning` works), and fold multi-line messages (tracebacks) into one line.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import IO

JOURNAL_STREAM_ENV = "JOURNAL_STREAM"

TERMINAL_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"

# Python level -> syslog priority (sd-daemon(3) prefixes).
_SYSLOG_PRIORITY = (
    (logging.CRITICAL, 2),  # crit
    (logging.ERROR, 3),  # err
    (logging.WARNING, 4),  # warning
    (logging.INFO, 6),  # info
)
_DEBUG_PRIORITY = 7


def syslog_priority(levelno: int) -> int:
    for threshold, priority in _SYSLOG_PRIORITY:
        if levelno >= threshold:
            return priority
    return _DEBUG_PRIORITY


class JournalFormatter(logging.Formatter):
    """`<priority>logger: message`, one line per record (newlines escaped as `\\n`)."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\r", "").replace("\n", "\\n")
        return f"<{syslog_priority(record.levelno)}>{text}"


def stream_is_journal(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journald stream systemd connected us to.

    $JOURNAL_STREAM is inherited by children whose stderr may be redirected elsewhere, so it only
    counts when its device and inode match the stream's (as systemd.exec(5) recommends).
    """
    env = os.environ if environ is None else environ
    value = env.get(JOURNAL_STREAM_ENV, "")
    dev, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(inode))
    except (OSError, ValueError, AttributeError):  # no fileno (captured stream) or bad value
        return False


def parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning, error or critical")
    return value


class _EdgeRuntimeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler we installed, so a second call replaces it and leaves others alone."""


def configure_logging(
    level: str | int = "info",
    stream: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Send log records at `level` and above to `stream` (stderr), formatted for where it goes."""
    out = sys.stderr if stream is None else stream
    handler = _EdgeRuntimeHandler(out)
    if stream_is_journal(out, environ):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(TERMINAL_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _EdgeRuntimeHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(parse_level(level))
    return handler
