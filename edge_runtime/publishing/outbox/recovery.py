"""Opening the outbox: a damaged file is moved aside and salvaged; memory when no disk is usable."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from pathlib import Path

from edge_runtime.publishing.outbox.base import Outbox, OutboxError, SyncMode
from edge_runtime.publishing.outbox.memory import MemoryOutbox
from edge_runtime.publishing.outbox.sqlite import SalvagedRow, SqliteOutbox

logger = logging.getLogger(__name__)

KEEP_CORRUPT_COPIES = 3  # moved-aside files kept for a post-mortem; older ones are deleted


def open_outbox(path: Path, max_messages: int, max_bytes: int, sync: SyncMode = "full") -> Outbox:
    """The sqlite outbox at `path`; a corrupt file is moved aside; memory if no disk is usable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteOutbox(path, max_messages, max_bytes, sync)
    except OSError as exc:
        return _memory_fallback(path, max_messages, max_bytes, str(exc))
    except OutboxError as exc:
        problem = str(exc)
    try:
        aside = move_aside(path)
    except OSError as exc:
        return _memory_fallback(path, max_messages, max_bytes,
                                f"{problem}; moving it aside failed too: {exc}")
    counters, rows = salvage(aside)
    logger.error("OUTBOX %s IS UNUSABLE (%s): moved it to %s and started a fresh outbox; salvaged "
                 "%d undelivered result(s) and the seq counters of %d pipeline(s) from it",
                 path, problem, aside, len(rows), len(counters))
    try:
        fresh = SqliteOutbox(path, max_messages, max_bytes, sync)
    except (OSError, OutboxError) as exc:
        return _memory_fallback(path, max_messages, max_bytes, str(exc))
    if counters or rows:
        fresh.restore(counters, rows)
    else:
        logger.error("no seq counter could be read from %s: every pipeline's seq starts again at 0 "
                     "(consumers see seq go back)", aside)
    return fresh



def salvage(path: Path) -> tuple[dict[str, tuple[int, int]], list[SalvagedRow]]:
    """Whatever can still be read from a damaged outbox: seq counters first, then messages.

    The counters matter most: without them seq would restart at 0 and consumers would take new
    results for duplicates of old ones. A message's own seq also bounds its pipeline's counter.
    """
    counters: dict[str, tuple[int, int]] = {}
    rows: list[SalvagedRow] = []
    if not path.is_file():
        return counters, rows
    try:
        db = sqlite3.connect(str(path), isolation_level=None)
        # Lets sqlite open a file shorter than its header says (truncated) instead of refusing it
        # outright; we only read.
        db.execute("PRAGMA writable_schema=ON")
    except sqlite3.Error:
        return counters, rows
    try:
        for query, sink in (
            ("SELECT name, next_seq, dropped FROM pipelines",
             lambda r: counters.__setitem__(str(r[0]), (int(r[1]), int(r[2])))),
            ("SELECT pipeline, seq, topic, qos, payload, created FROM messages ORDER BY id",
             lambda r: rows.append((str(r[0]), int(r[1]), str(r[2]), int(r[3]), bytes(r[4]),
                                    float(r[5])))),
        ):
            try:
                for row in db.execute(query):
                    sink(row)
            except (sqlite3.Error, TypeError, ValueError):
                continue  # keep what was read before the damage
    finally:
        db.close()
    for pipeline, seq, *_ in rows:
        next_seq, dropped = counters.get(pipeline, (0, 0))
        counters[pipeline] = (max(next_seq, seq + 1), dropped)
    return counters, rows


def _memory_fallback(path: Path, max_messages: int, max_bytes: int, problem: str) -> Outbox:
    logger.error("OUTBOX %s CANNOT BE USED (%s): keeping results in memory only, so a restart "
                 "loses the undelivered ones; set [outbox] path to a writable place",
                 path, problem)
    return MemoryOutbox(max_messages, max_bytes)


def move_aside(path: Path) -> Path:
    """Rename the file (and its -wal/-shm companions) to <name>.corrupt-<UTC time>; keep a few."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.corrupt-{stamp}.{n}")
        n += 1
    if path.exists() or path.is_symlink():
        path.rename(aside)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            if suffix == "-wal":
                companion.rename(aside.with_name(aside.name + suffix))
            else:
                companion.unlink()  # shared-memory index: rebuilt from the WAL, worthless alone
    _prune_aside(path)
    return aside


def _prune_aside(path: Path) -> None:
    copies = sorted((p for p in path.parent.glob(f"{path.name}.corrupt-*")
                     if not p.name.endswith("-wal")), key=lambda p: p.name)
    for old in copies[:-KEEP_CORRUPT_COPIES]:
        for victim in (old, old.with_name(old.name + "-wal")):
            try:
                if victim.is_dir():
                    shutil.rmtree(victim)
                elif victim.exists():
                    victim.unlink()
            except OSError as exc:
                logger.warning("cannot delete old outbox copy %s: %s", victim, exc)
