"""The outbox in one sqlite file (WAL journal): rows, counters, eviction beyond the bounds.

Per result the encoded MQTT message, per pipeline the next `seq` and the number of results dropped
on overflow. A batch gets its seqs and is stored in one transaction (group_commit.py decides who
commits), so a result that has a seq is on disk, and seq stays gap-free and keeps increasing
across restarts; `ack` deletes rows once the broker sent PUBACK.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

from edge_runtime.publishing.outbox.base import (
    EncodeErrors,
    Encoder,
    Outbox,
    OutboxError,
    OutboxMessage,
    PipelineCounts,
    SyncMode,
)
from edge_runtime.publishing.outbox.group_commit import GroupCommit, Pending

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # PRAGMA user_version of the file
SalvagedRow = tuple[str, int, str, int, bytes, float]  # pipeline, seq, topic, qos, payload, created

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline TEXT NOT NULL,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    qos INTEGER NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    dropped INTEGER NOT NULL
);
"""


_DEPTH_BY_PIPELINE = (
    "SELECT pipeline, COUNT(*), COALESCE(SUM(size), 0) FROM messages GROUP BY pipeline")


class SqliteOutbox(Outbox):
    """The outbox in one sqlite file in WAL mode; see the module docstring."""

    backend = "sqlite"

    def __init__(self, path: Path, max_messages: int, max_bytes: int,
                 sync: SyncMode = "full") -> None:
        super().__init__(max_messages, max_bytes)
        self.path = str(path)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; one connection shared by the
            # pipelines' workers and the network thread, serialized by self._lock.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=5.0)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open: {exc}") from exc
        self._sync = sync
        try:
            self._prepare(sync)
            # Readers (the network thread's replay) use their own connection: WAL lets them read
            # committed rows while a worker's commit waits for its fsync, without our lock.
            self._reader = sqlite3.connect(self.path, isolation_level=None,
                                           check_same_thread=False, timeout=5.0)
        except (sqlite3.Error, OutboxError) as exc:
            self._db.close()
            raise exc if isinstance(exc, OutboxError) else OutboxError(str(exc)) from exc
        self._read_lock = threading.Lock()
        self._group = GroupCommit(self._commit_and_log)

    def _prepare(self, sync: SyncMode) -> None:
        db = self._db
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(f"cannot switch to WAL journal mode (got {mode!r})")
        # FULL: a commit survives power loss (fsync per result); NORMAL: survives a crash of the
        # daemon, a power cut may lose the last commits (sqlite stays consistent).
        db.execute(f"PRAGMA synchronous={sync.upper()}")
        check = db.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            raise OutboxError("integrity check failed: " + "; ".join(str(r[0]) for r in check[:3]))
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > FORMAT_VERSION:
            raise OutboxError(f"written by a newer edge-runtime (format {version}, "
                              f"this one reads {FORMAT_VERSION})")
        db.executescript(_SCHEMA)
        if version == 0:
            db.execute(f"PRAGMA user_version={FORMAT_VERSION}")
        for name, next_seq, dropped in db.execute("SELECT name, next_seq, dropped FROM pipelines"):
            self._counts[name] = PipelineCounts(int(next_seq), int(dropped))
        for name, depth, size in db.execute(_DEPTH_BY_PIPELINE):
            self._counts_for(name).depth = int(depth)
            self._depth += int(depth)
            self._bytes += int(size)

    def append_many(self, pipeline: str, topic: str, qos: int,
                    encoders: Sequence[Encoder]) -> list[int]:
        """Store results; returns once the transaction holding them is committed (group commit)."""
        items = [Pending(pipeline, topic, qos, encode) for encode in encoders]
        self._group.submit(items)
        failed = [item.error for item in items if item.error is not None]
        for error in failed:
            if isinstance(error, OutboxError):  # the commit itself failed, not an encoding
                raise error
        if failed:
            raise EncodeErrors([item.seq for item in items if item.error is None], failed)
        return [item.seq for item in items]

    def _commit_and_log(self, batch: list[Pending]) -> None:
        self._log_drops(self._commit(batch))

    def _commit(self, batch: list[Pending]) -> dict[str, list[int]]:
        """One transaction for the batch: seq, rows, eviction beyond the bounds, counters."""
        with self._lock:
            db = self._db
            next_seq: dict[str, int] = {}
            stored: list[tuple[Pending, int]] = []
            dropped: dict[str, list[int]] = {}
            try:
                db.execute("BEGIN IMMEDIATE")
                created = time.time()
                rows: list[tuple[str, int, str, int, bytes, int, float]] = []
                for item in batch:
                    seq = next_seq.get(item.pipeline, self._counts_for(item.pipeline).next_seq)
                    try:
                        payload = item.encode(seq)
                    except Exception as exc:  # noqa: BLE001 - the caller's problem, not the batch's
                        item.error = exc
                        continue
                    item.seq = seq
                    next_seq[item.pipeline] = seq + 1
                    size = len(payload) + len(item.topic)
                    rows.append((item.pipeline, seq, item.topic, item.qos, payload, size, created))
                    stored.append((item, size))
                db.executemany(
                    "INSERT INTO messages (pipeline, seq, topic, qos, payload, size, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                depth = self._depth + len(stored)
                total = self._bytes + sum(size for _, size in stored)
                if depth > self.max_messages or total > self.max_bytes:
                    dropped = self._evict(depth, total)
                # Absolute values from memory (loaded at open): they also carry drops counted
                # while the disk refused writes.
                totals = {name: self._counts_for(name).dropped + len(seqs)
                          for name, seqs in dropped.items()}
                for name in next_seq:
                    totals.setdefault(name, self._counts_for(name).dropped)
                db.executemany(
                    "INSERT INTO pipelines (name, next_seq, dropped) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET next_seq = excluded.next_seq, "
                    "dropped = excluded.dropped",
                    [(name, next_seq.get(name, self._counts_for(name).next_seq), value)
                     for name, value in totals.items()])
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                # Disk full or I/O error: these results are lost. Count them and keep their seq
                # consumed, so consumers see gaps exactly where the dropped counter says.
                for item in batch:
                    if item.error is not None:
                        continue  # its encoding failed: the caller gets that error instead
                    counts = self._counts_for(item.pipeline)
                    if item.seq < 0:  # not reached before the failure
                        item.seq = next_seq.get(item.pipeline, counts.next_seq)
                        next_seq[item.pipeline] = item.seq + 1
                    counts.dropped += 1
                    self._warn.warning("write", "outbox %s: cannot store result %s/%d (%s); "
                                       "dropped", self.path, item.pipeline, item.seq, exc)
                for name, seq in next_seq.items():
                    self._counts_for(name).next_seq = seq
                return {}
            for name, seq in next_seq.items():
                self._counts_for(name).next_seq = seq
            for item, size in stored:
                self._counts_for(item.pipeline).depth += 1
                self._depth += 1
                self._bytes += size
            for name, seqs in dropped.items():
                self._counts_for(name).dropped += len(seqs)
        return dropped

    def _evict(self, depth: int, total: int) -> dict[str, list[int]]:
        """Inside the append transaction: delete the oldest rows until within bounds."""
        dropped: dict[str, list[int]] = {}
        last_id = None
        rows = self._db.execute("SELECT id, pipeline, seq, size FROM messages ORDER BY id")
        for row_id, pipeline, seq, size in rows:
            if depth <= self.max_messages and total <= self.max_bytes:
                break
            depth -= 1
            total -= size
            last_id = row_id
            dropped.setdefault(pipeline, []).append(seq)
            self._counts_for(pipeline).depth -= 1
            self._depth -= 1
            self._bytes -= size
        rows.close()
        if last_id is not None:
            self._db.execute("DELETE FROM messages WHERE id <= ?", (last_id,))
        return dropped

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction was open
        try:  # an ack that failed half-way must not leave the result commits unsynced
            self._db.execute(f"PRAGMA synchronous={self._sync.upper()}")
        except sqlite3.Error:
            pass
        # The in-memory counters may have been adjusted by _evict before the failure: reload.
        self._reload_counts()

    def _reload_counts(self) -> None:
        try:
            depth = {name: (int(d), int(s))
                     for name, d, s in self._db.execute(_DEPTH_BY_PIPELINE)}
        except sqlite3.Error:
            return
        self._depth = sum(d for d, _ in depth.values())
        self._bytes = sum(s for _, s in depth.values())
        for name in depth:
            self._counts_for(name)
        for name, counts in self._counts.items():
            counts.depth = depth.get(name, (0, 0))[0]

    def restore(self, counters: dict[str, tuple[int, int]], rows: list[SalvagedRow]) -> None:
        """Load salvaged counters and messages into this (fresh) outbox, in their old order."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(
                    "INSERT INTO messages (pipeline, seq, topic, qos, payload, size, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(p, s, t, q, b, len(b) + len(t), c) for p, s, t, q, b, c in rows])
                db.executemany(
                    "INSERT INTO pipelines (name, next_seq, dropped) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET next_seq = excluded.next_seq, "
                    "dropped = excluded.dropped",
                    [(name, n, d) for name, (n, d) in counters.items()])
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                logger.error("outbox %s: cannot store the salvaged results: %s", self.path, exc)
                return
            for name, (next_seq, dropped) in counters.items():
                counts = self._counts_for(name)
                counts.next_seq, counts.dropped = next_seq, dropped
            self._reload_counts()

    def pending(self, after_id: int, limit: int) -> list[OutboxMessage]:
        with self._read_lock:
            try:
                rows = self._reader.execute(
                    "SELECT id, pipeline, seq, topic, qos, payload FROM messages WHERE id > ? "
                    "ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
            except sqlite3.Error as exc:
                self._warn.warning("read", "outbox %s: cannot read: %s", self.path, exc)
                return []
        return [OutboxMessage(int(i), p, int(s), t, int(q), bytes(b)) for i, p, s, t, q, b in rows]

    def ack(self, messages: Iterable[OutboxMessage]) -> int:
        removed = 0
        with self._lock:
            db = self._db
            try:
                # A lost delete costs a duplicate, never a result: no fsync for it. It reaches the
                # disk with the next result's (synchronous) commit, or the OS's writeback.
                db.execute("PRAGMA synchronous=OFF")
                db.execute("BEGIN IMMEDIATE")
                gone: list[OutboxMessage] = []
                for message in messages:
                    cursor = db.execute("DELETE FROM messages WHERE id = ?", (message.id,))
                    if cursor.rowcount:
                        gone.append(message)
                db.execute("COMMIT")
                db.execute(f"PRAGMA synchronous={self._sync.upper()}")
            except sqlite3.Error as exc:
                self._rollback()
                # The rows stay and are sent again after a reconnect: a duplicate, not a loss.
                self._warn.warning("ack", "outbox %s: cannot delete acknowledged results: %s",
                                   self.path, exc)
                return 0
            for message in gone:
                self._counts_for(message.pipeline).depth -= 1
                self._depth -= 1
                self._bytes -= message.size
                removed += 1
        return removed

    def reject(self, message: OutboxMessage) -> bool:
        with self._lock:
            counts = self._counts_for(message.pipeline)
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                if not db.execute("DELETE FROM messages WHERE id = ?", (message.id,)).rowcount:
                    db.execute("ROLLBACK")
                    return False
                db.execute("UPDATE pipelines SET dropped = ? WHERE name = ?",
                           (counts.dropped + 1, message.pipeline))
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self._warn.warning("reject", "outbox %s: cannot drop a rejected result: %s",
                                   self.path, exc)
                return False
            counts.dropped += 1
            counts.depth -= 1
            self._depth -= 1
            self._bytes -= message.size
        return True

    def oldest_created(self) -> float | None:
        with self._read_lock:
            try:
                row = self._reader.execute(
                    "SELECT created FROM messages ORDER BY id LIMIT 1").fetchone()
            except sqlite3.Error:
                return None
        return None if row is None else float(row[0])

    def close(self) -> None:
        with self._lock, self._read_lock:
            try:
                self._reader.close()
                self._db.close()
            except sqlite3.Error as exc:
                logger.warning("outbox %s: close failed: %s", self.path, exc)

