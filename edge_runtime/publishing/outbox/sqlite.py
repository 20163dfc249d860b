"""The outbox in one sqlite file (WAL journal): rows, counters, eviction beyond the bounds.

Per result the encoded MQTT message, per pipeline the next `seq` and the number of results dropped
on overflow. A batch gets its seqs and is stored in one transaction (group_commit.py decides who
commits), so a result that has a seq is on disk, and seq stays gap-free and keeps increasing
across restarts; `ack` deletes rows once the broker sent PUBACK.

A full disk (issue 12, scenario 3) must not break the outbox for good:
- Its own size is bounded by `max_bytes`, WAL included: the WAL is checkpointed and cut back to
  a share of the budget (`journal_size_limit`), the database file may not grow past the rest
  (`max_page_count`), so the outbox alone never fills the disk.
- A commit refused for want of space ("database or disk is full") deletes the oldest rows and is
  tried again: rows freed by deliveries or by eviction are reused at once. Results that still
  cannot be stored are dropped and counted.
- A delete that fails is remembered (the row is delivered: not sent again, not counted as
  waiting) and retried with the next write, until the disk has room again.
- `seq` and `dropped` never go backwards: a dropped result only takes a seq (the gap a consumer
  sees) from a block reserved on disk first (`pipelines.reserved`); the next start continues
  after the reserved block, so no seq ever names two results.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

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
from edge_runtime.publishing.outbox.reserve import Reserve

logger = logging.getLogger(__name__)
T = TypeVar("T")

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
    dropped INTEGER NOT NULL,
    reserved INTEGER NOT NULL DEFAULT 0
);
"""

WAL_SHARE = 8  # the WAL may take 1/8 of max_bytes ...
WAL_MIN = 64 * 1024  # ... but at least this (checkpoint cost) ...
WAL_MAX = 4 * 1024 * 1024  # ... and at most sqlite's default checkpoint size
SEQ_BLOCK = 1000  # seqs reserved on disk at a time for results a full disk makes us drop
ROOM_TRIES = 4  # evict-and-retry rounds before the results of a refused commit are dropped
LOW_WATER_PAGES = 16  # pages kept free beyond the WAL's share: checkpoints, counters, deletes

_UPSERT = ("INSERT INTO pipelines (name, next_seq, dropped, reserved) VALUES (?, ?, ?, ?) "
           "ON CONFLICT(name) DO UPDATE SET next_seq = excluded.next_seq, "
           "dropped = excluded.dropped, reserved = excluded.reserved")


def wal_limit(max_bytes: int, disk_bytes: int | None = None) -> int:
    """The WAL's share of the outbox's byte budget (or of the file system, if that is smaller)."""
    budget = max_bytes if disk_bytes is None else min(max_bytes, disk_bytes)
    return max(WAL_MIN, min(WAL_MAX, budget // WAL_SHARE))


def is_full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL: the disk, or the file's max_page_count, has no room."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)


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
        self._dir = os.path.dirname(os.path.abspath(self.path))  # statvfs before each commit
        self._reserved: dict[str, int] = {}  # seqs below this are reserved on disk
        self._undeleted: dict[int, OutboxMessage] = {}  # delivered, but their delete failed
        self._evicted_upto = 0  # highest row id the open transaction's eviction deletes
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
        columns = {row[1] for row in db.execute("PRAGMA table_info(pipelines)")}
        if "reserved" not in columns:  # written before the seq reservation
            db.execute("ALTER TABLE pipelines ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0")
        if version == 0:
            db.execute(f"PRAGMA user_version={FORMAT_VERSION}")
        self._bound_size()
        for name, next_seq, dropped, reserved in db.execute(
                "SELECT name, next_seq, dropped, reserved FROM pipelines"):
            # Seqs up to `reserved` may have gone to results dropped on a full disk: never reuse.
            self._counts[name] = PipelineCounts(max(int(next_seq), int(reserved)), int(dropped))
            self._reserved[name] = int(reserved)
        for name, depth, size in db.execute(_DEPTH_BY_PIPELINE):
            self._counts_for(name).depth = int(depth)
            self._depth += int(depth)
            self._bytes += int(size)

    def _bound_size(self) -> None:
        """The WAL and the database file together within max_bytes (see the module docstring)."""
        db = self._db
        page = int(db.execute("PRAGMA page_size").fetchone()[0])
        disk = self._disk()
        wal = wal_limit(self.max_bytes, None if disk is None else disk[0])
        # Below this much free space on the file system the outbox stops growing (module docs).
        self.low_water = wal + LOW_WATER_PAGES * page
        self._reserve = Reserve(Path(self.path + ".reserve"), wal)
        self._reserve.take()
        db.execute(f"PRAGMA journal_size_limit={wal}")  # cut back to this after a checkpoint
        # A checkpoint once the share is used (sqlite's default for the default budget); the WAL
        # outgrows it by one transaction at most, which LOW_WATER_PAGES leaves room for.
        db.execute(f"PRAGMA wal_autocheckpoint={max(8, wal // page)}")
        # The database gets what the WAL, the reserve and that slack leave.
        pages = max(16, (self.max_bytes - 2 * wal) // page - LOW_WATER_PAGES)
        # (never below the current size: sqlite keeps the larger of the two)
        self.max_pages = int(db.execute(f"PRAGMA max_page_count={pages}").fetchone()[0])
        self.page_size = page

    def _disk(self) -> tuple[int, int] | None:
        """(size, free bytes) of the file system holding the outbox; None if unknown."""
        try:
            st = os.statvfs(self._dir)
        except OSError:
            return None
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    def _guard_disk(self, estimate: int) -> None:
        """Before a commit, when the file system is nearly full (another program filled it, or it
        is smaller than max_bytes): fold the WAL into the database while the database can still
        take it, and let new rows reuse pages freed by deliveries or by dropping the oldest rows,
        instead of growing the file. The WAL file keeps its size for the next transactions, so
        deletes and counter updates still fit when the disk has no byte left."""
        disk = self._disk()
        if disk is None:
            return
        if disk[1] >= self.low_water + estimate:
            if not self._reserve.held and disk[1] >= self.low_water + self._reserve.size:
                self._reserve.take()  # space is back
            return
        try:
            self._db.execute("PRAGMA wal_checkpoint(RESTART)")
            spare = int(self._db.execute("PRAGMA freelist_count").fetchone()[0]) * self.page_size
        except sqlite3.Error:
            return
        disk = self._disk()
        if disk is not None and disk[1] < self.low_water + estimate and spare < estimate:
            self._make_room(estimate - spare)

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
        """Store the batch; when the disk refuses, make room and try again, else drop it."""
        with self._lock:
            self._retry_deletes()
            dropped: dict[str, list[int]] = {}
            error: sqlite3.Error | None = None
            row = self._bytes // self._depth if self._depth else 0
            self._guard_disk(row * len(batch) + self.page_size)
            for attempt in range(ROOM_TRIES):
                try:
                    for name, seqs in self._insert(batch).items():
                        dropped.setdefault(name, []).extend(seqs)
                    return dropped
                except sqlite3.Error as exc:
                    error = exc
                    self._rollback()
                for item in batch:
                    item.seq = -1  # given again by the next attempt
                if not is_full(error):
                    break
                if self._reserve.give_up():
                    continue  # the same commit again, with the reserve's room
                # (logged there, and not as "outbox full": the bounds were not what stopped it)
                if not self._make_room((row * len(batch) + self.page_size) * 4 ** attempt):
                    break
            assert error is not None
            self._drop(batch, error)
            return dropped

    def _insert(self, batch: list[Pending]) -> dict[str, list[int]]:
        """One transaction for the batch: seq, rows, eviction beyond the bounds, counters."""
        db = self._db
        next_seq: dict[str, int] = {}
        stored: list[tuple[Pending, int]] = []
        dropped: dict[str, list[int]] = {}
        db.execute("BEGIN IMMEDIATE")
        created = time.time()
        rows: list[tuple[str, int, str, int, bytes, int, float]] = []
        for item in batch:
            if item.error is not None:
                continue  # its encoding failed in an earlier attempt
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
        # Absolute values from memory (loaded at open): they also carry drops counted while the
        # disk refused writes. Writing next_seq releases any reserved block.
        totals = {name: self._counts_for(name).dropped + len(seqs)
                  for name, seqs in dropped.items()}
        for name in next_seq:
            totals.setdefault(name, self._counts_for(name).dropped)
        db.executemany(_UPSERT, [
            (name, next_seq.get(name, self._counts_for(name).next_seq), value, 0)
            for name, value in totals.items()])
        db.execute("COMMIT")
        self._forget_evicted()
        for name, seq in next_seq.items():
            self._counts_for(name).next_seq = seq
        for name in totals:
            self._reserved[name] = 0
        for item, size in stored:
            self._counts_for(item.pipeline).depth += 1
            self._depth += 1
            self._bytes += size
        for name, seqs in dropped.items():
            self._counts_for(name).dropped += len(seqs)
        return dropped

    def _make_room(self, needed: int) -> dict[str, list[int]]:
        """The disk refused a commit: delete the oldest rows holding at least `needed` bytes (at
        least one row), counted as dropped, in their own transaction; the freed pages are reused
        by the retried commit. {} when there is nothing to delete or even the delete fails."""
        def evict() -> dict[str, list[int]]:
            dropped = self._evict(self._depth, self._bytes, needed)
            if dropped:
                self._db.executemany(_UPSERT, [
                    (name, self._counts_for(name).next_seq,
                     self._counts_for(name).dropped + len(seqs), self._reserved.get(name, 0))
                    for name, seqs in dropped.items()])
            return dropped

        try:
            dropped = self._transaction(evict)
            self._forget_evicted()
        except sqlite3.Error as exc:
            self._warn.warning("room", "outbox %s: cannot delete old results to make room: %s",
                               self.path, exc)
            return {}
        for name, seqs in dropped.items():
            self._counts_for(name).dropped += len(seqs)
            self._warn.warning(f"room-{name}", "outbox %s: the disk is full: dropped %d oldest "
                               "result(s) of pipeline %s (seq %d..%d) to store new ones",
                               self.path, len(seqs), name, min(seqs), max(seqs))
        return dropped

    def _drop(self, batch: list[Pending], exc: sqlite3.Error) -> None:
        """The batch cannot be stored: count its results as dropped. Each takes a seq (the gap a
        consumer sees) only from a block reserved on disk, so no seq is ever given twice."""
        touched: set[str] = set()
        for item in batch:
            if item.error is not None:
                continue  # its encoding failed: the caller gets that error instead
            counts = self._counts_for(item.pipeline)
            if counts.next_seq >= self._reserved.get(item.pipeline, 0):
                self._reserve_seqs(item.pipeline, counts.next_seq + SEQ_BLOCK)
            if counts.next_seq < self._reserved.get(item.pipeline, 0):
                item.seq = counts.next_seq
                counts.next_seq += 1
            else:
                item.error = OutboxError(f"outbox {self.path}: cannot store the result ({exc}); "
                                         "dropped and counted")
            counts.dropped += 1
            touched.add(item.pipeline)
            self._warn.warning("write", "outbox %s: cannot store result %s/%s (%s); dropped",
                               self.path, item.pipeline,
                               item.seq if item.seq >= 0 else "(no seq)", exc)
        self._save_counts(touched)

    def _reserve_seqs(self, pipeline: str, until: int) -> None:
        """Put `reserved = until` on disk before handing out seqs below it (an in-place update:
        it usually fits where the results did not)."""
        previous = self._reserved.get(pipeline, 0)
        self._reserved[pipeline] = until
        if not self._save_counts({pipeline}):
            self._reserved[pipeline] = previous

    def _save_counts(self, pipelines: Iterable[str], release: bool = False) -> bool:
        """Write the counters; `release`: next_seq is exact on disk, reserved blocks are freed."""
        names = list(pipelines)
        rows = [(name, self._counts_for(name).next_seq, self._counts_for(name).dropped,
                 0 if release else self._reserved.get(name, 0)) for name in names]
        if not rows:
            return True
        try:
            self._transaction(lambda: self._db.executemany(_UPSERT, rows))
        except sqlite3.Error as exc:
            self._warn.warning("counts", "outbox %s: cannot save the seq and drop counters: %s",
                               self.path, exc)
            return False
        if release:
            for name in names:
                self._reserved[name] = 0
        return True

    def _evict(self, depth: int, total: int, at_least: int = 0) -> dict[str, list[int]]:
        """Inside a transaction: delete the oldest rows until within bounds (and until rows of
        `at_least` bytes are gone)."""
        dropped: dict[str, list[int]] = {}
        last_id = None
        freed = 0
        rows = self._db.execute("SELECT id, pipeline, seq, size FROM messages ORDER BY id")
        for row_id, pipeline, seq, size in rows:
            if depth <= self.max_messages and total <= self.max_bytes and freed >= at_least:
                break
            freed += size
            last_id = row_id
            if row_id in self._undeleted:  # delivered already: deleting it drops nothing
                continue
            depth -= 1
            total -= size
            dropped.setdefault(pipeline, []).append(seq)
            self._counts_for(pipeline).depth -= 1
            self._depth -= 1
            self._bytes -= size
        rows.close()
        if last_id is not None:
            self._db.execute("DELETE FROM messages WHERE id <= ?", (last_id,))
            self._evicted_upto = last_id  # undeleted rows up to here go once this commits
        return dropped

    def _forget_evicted(self) -> None:
        """After a commit: the delivered rows its eviction deleted need no retry any more."""
        if self._evicted_upto:
            for row_id in [i for i in self._undeleted if i <= self._evicted_upto]:
                del self._undeleted[row_id]
            self._evicted_upto = 0

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
        self._evicted_upto = 0
        self._reload_counts()

    def _reload_counts(self) -> None:
        try:
            depth = {name: (int(d), int(s))
                     for name, d, s in self._db.execute(_DEPTH_BY_PIPELINE)}
        except sqlite3.Error:
            return
        for message in self._undeleted.values():  # delivered: not waiting any more
            d, size = depth.get(message.pipeline, (0, 0))
            depth[message.pipeline] = (max(0, d - 1), max(0, size - message.size))
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
                db.executemany(_UPSERT, [(name, n, d, 0) for name, (n, d) in counters.items()])
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
        undeleted = self._undeleted  # delivered rows whose delete failed are not sent again
        return [OutboxMessage(int(i), p, int(s), t, int(q), bytes(b))
                for i, p, s, t, q, b in rows if int(i) not in undeleted]

    def ack(self, messages: Iterable[OutboxMessage]) -> int:
        """Delete delivered rows. If the disk refuses even that, the rows count as delivered
        (not waiting, not sent again) and the delete is retried with the next write."""
        with self._lock:
            gone = [m for m in messages if m.id not in self._undeleted]
            deleted = self._delete(gone + list(self._undeleted.values()))
            if deleted is None:
                for message in gone:
                    self._undeleted[message.id] = message
                self._warn.warning("ack", "outbox %s: cannot delete %d delivered result(s) yet "
                                   "(retried with the next write)", self.path,
                                   len(self._undeleted))
                self._reload_counts()
                return len(gone)
            removed = 0
            for message in gone:
                if message.id in deleted:
                    self._counts_for(message.pipeline).depth -= 1
                    self._depth -= 1
                    self._bytes -= message.size
                    removed += 1
            self._undeleted.clear()
        return removed

    def _retry_deletes(self) -> None:
        """Delete the delivered rows an earlier ack could not (under self._lock)."""
        if self._undeleted and self._delete(list(self._undeleted.values())) is not None:
            logger.info("outbox %s: deleted %d delivered result(s) whose delete had failed",
                        self.path, len(self._undeleted))
            self._undeleted.clear()

    def _delete(self, messages: list[OutboxMessage]) -> set[int] | None:
        """Delete rows in one transaction; the ids that were there, None if it failed."""
        db = self._db
        try:
            # A lost delete costs a duplicate, never a result: no fsync for it. It reaches the
            # disk with the next result's (synchronous) commit, or the OS's writeback.
            db.execute("PRAGMA synchronous=OFF")
            deleted = self._transaction(lambda: {
                m.id for m in messages
                if db.execute("DELETE FROM messages WHERE id = ?", (m.id,)).rowcount})
            db.execute(f"PRAGMA synchronous={self._sync.upper()}")
        except sqlite3.Error:
            self._rollback()
            return None
        return deleted

    def _transaction(self, body: Callable[[], T]) -> T:
        """BEGIN IMMEDIATE, `body`, COMMIT (under self._lock). On a full disk the reserve is given
        up and it runs once more; a failure is rolled back and raised."""
        for last in (False, True):
            try:
                self._db.execute("BEGIN IMMEDIATE")
                result = body()
                self._db.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                self._rollback()
                if last or not is_full(exc) or not self._reserve.give_up():
                    raise
        raise AssertionError("unreachable")

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
            self._retry_deletes()
            # Drops counted while the disk refused writes; next_seq exact: no block stays reserved.
            self._save_counts(list(self._counts), release=True)
            try:
                self._reader.close()
                self._db.close()
            except sqlite3.Error as exc:
                logger.warning("outbox %s: close failed: %s", self.path, exc)

