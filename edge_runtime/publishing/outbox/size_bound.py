"""The outbox's files within `max_bytes`, and its way out of a nearly full disk (issue 12, scenario 3).

- The WAL gets a share of the budget: it is checkpointed and cut back to that share
  (`wal_autocheckpoint`, `journal_size_limit`); the database file may not grow past the rest
  (`max_page_count`), so the outbox alone never fills the disk. `<outbox>.reserve` (reserve.py)
  keeps the WAL's size free for housekeeping.
- Before each commit `statvfs` is read: when the file system is nearly full (another program
  filled it, or it is smaller than `max_bytes`) the WAL is folded into the database and new rows
  reuse the pages freed by deliveries or by dropping the oldest rows, instead of growing the file.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Callable

from edge_runtime.publishing.outbox.reserve import Reserve

WAL_SHARE = 8  # the WAL may take 1/8 of max_bytes ...
WAL_MIN = 64 * 1024  # ... but at least this (checkpoint cost) ...
WAL_MAX = 4 * 1024 * 1024  # ... and at most sqlite's default checkpoint size
LOW_WATER_PAGES = 16  # pages kept free beyond the WAL's share: checkpoints, counters, deletes


def wal_limit(max_bytes: int, disk_bytes: int | None = None) -> int:
    """The WAL's share of the outbox's byte budget (or of the file system, if that is smaller)."""
    budget = max_bytes if disk_bytes is None else min(max_bytes, disk_bytes)
    return max(WAL_MIN, min(WAL_MAX, budget // WAL_SHARE))


def is_full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL: the disk, or the file's max_page_count, has no room."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)


class SizeBound:
    """The size limits set on the outbox's connection, its reserve, and the disk guard."""

    def __init__(self, db: sqlite3.Connection, path: str, max_bytes: int) -> None:
        """The WAL and the database file together within max_bytes (see the module docstring)."""
        self._db = db
        self._dir = os.path.dirname(os.path.abspath(path))  # statvfs before each commit
        page = int(db.execute("PRAGMA page_size").fetchone()[0])
        disk = self.disk()
        wal = wal_limit(max_bytes, None if disk is None else disk[0])
        # Below this much free space on the file system the outbox stops growing (module docs).
        self.low_water = wal + LOW_WATER_PAGES * page
        self.reserve = Reserve(Path(path + ".reserve"), wal)
        self.reserve.take()
        db.execute(f"PRAGMA journal_size_limit={wal}")  # cut back to this after a checkpoint
        # A checkpoint once the share is used (sqlite's default for the default budget); the WAL
        # outgrows it by one transaction at most, which LOW_WATER_PAGES leaves room for.
        db.execute(f"PRAGMA wal_autocheckpoint={max(8, wal // page)}")
        # The database gets what the WAL, the reserve and that slack leave.
        pages = max(16, (max_bytes - 2 * wal) // page - LOW_WATER_PAGES)
        # (never below the current size: sqlite keeps the larger of the two)
        self.max_pages = int(db.execute(f"PRAGMA max_page_count={pages}").fetchone()[0])
        self.page_size = page

    def disk(self) -> tuple[int, int] | None:
        """(size, free bytes) of the file system holding the outbox; None if unknown."""
        try:
            st = os.statvfs(self._dir)
        except OSError:
            return None
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    def guard(self, estimate: int, make_room: Callable[[int], object]) -> None:
        """Before a commit of about `estimate` bytes, when the file system is nearly full: fold the
        WAL into the database while the database can still take it, and let new rows reuse pages
        freed by deliveries or by dropping the oldest rows (`make_room(bytes)`), instead of
        growing the file. The WAL file keeps its size for the next transactions, so deletes and
        counter updates still fit when the disk has no byte left."""
        disk = self.disk()
        if disk is None:
            return
        if disk[1] >= self.low_water + estimate:
            if not self.reserve.held and disk[1] >= self.low_water + self.reserve.size:
                self.reserve.take()  # space is back
            return
        try:
            self._db.execute("PRAGMA wal_checkpoint(RESTART)")
            spare = int(self._db.execute("PRAGMA freelist_count").fetchone()[0]) * self.page_size
        except sqlite3.Error:
            return
        disk = self.disk()
        if disk is not None and disk[1] < self.low_water + estimate and spare < estimate:
            make_room(estimate - spare)
