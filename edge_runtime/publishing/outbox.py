"""The durable outbox: every QoS 1 result waits on disk until the broker has acknowledged it.

One sqlite file (WAL journal) holds, per result, the encoded MQTT message, and per pipeline the next
`seq` and the number of results dropped on overflow. `append` assigns the seq and stores the message
in one transaction, so a result that has a seq is on disk, and seq stays gap-free and keeps
increasing across restarts; `ack` deletes rows once the broker sent PUBACK. Replay reads rows in
insertion (= per-pipeline seq) order. Bounds (`max_messages`, `max_bytes`) drop the oldest rows and
count every dropped result per pipeline, persistently.

A file that cannot be opened or fails sqlite's quick_check at start is moved aside with a timestamp
and a fresh outbox is created; if even that is impossible (read-only or full disk), results are
kept in memory (`MemoryOutbox`), loudly. The memory outbox is also what the bench compares against.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal, Sequence

from edge_runtime.ratelimit import RateLimitedLogger

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # PRAGMA user_version of the file
KEEP_CORRUPT_COPIES = 3  # moved-aside files kept for a post-mortem; older ones are deleted

SyncMode = Literal["full", "normal"]
Encoder = Callable[[int], bytes]  # seq -> the encoded payload carrying that seq

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


class OutboxError(Exception):
    """The outbox file is unusable (corrupt, unreadable, written by a newer version)."""


class EncodeErrors(Exception):
    """Results of a batch that could not be encoded (e.g. a NaN score); the others were stored."""

    def __init__(self, stored: list[int], errors: list[Exception]) -> None:
        super().__init__(f"{len(errors)} result(s) could not be encoded: {errors[0]}")
        self.stored = stored  # the seqs of the results that were stored
        self.errors = errors


@dataclass(frozen=True)
class OutboxMessage:
    id: int  # insertion order over all pipelines; replay order
    pipeline: str
    seq: int
    topic: str
    qos: int
    payload: bytes

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.topic)


@dataclass
class PipelineCounts:
    next_seq: int = 0
    dropped: int = 0  # results removed by the bounds before the broker acknowledged them
    depth: int = 0  # results waiting in the outbox


@dataclass(frozen=True)
class OutboxSnapshot:
    backend: str  # "sqlite" or "memory"
    path: str
    depth: int
    bytes: int
    dropped: int
    oldest_age_s: float | None
    pipelines: dict[str, PipelineCounts]


@dataclass
class _Pending:
    """A result waiting for the next group commit."""

    pipeline: str
    topic: str
    qos: int
    encode: Encoder
    seq: int = -1
    done: bool = False
    error: Exception | None = None


class Outbox:
    """Bookkeeping shared by both backends: seq, depth, bytes and drop counters under one lock."""

    backend = "memory"

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.path = ""
        self._lock = threading.Lock()
        self._counts: dict[str, PipelineCounts] = {}
        self._depth = 0
        self._bytes = 0
        self._warn = RateLimitedLogger(logger)

    # -- the interface --------------------------------------------------------------------------
    def append(self, pipeline: str, topic: str, qos: int, encode: Encoder) -> int:
        """Give the result the pipeline's next seq and store it; returns the seq."""
        try:
            return self.append_many(pipeline, topic, qos, [encode])[0]
        except EncodeErrors as exc:
            raise exc.errors[0] from None

    def append_many(self, pipeline: str, topic: str, qos: int,
                    encoders: Sequence[Encoder]) -> list[int]:
        """Store several results of one pipeline in order, in one transaction; their seqs.

        A result whose encoder fails takes no seq; the others are stored, then EncodeErrors says
        which were stored and why the rest failed.
        """
        raise NotImplementedError

    def pending(self, after_id: int, limit: int) -> list[OutboxMessage]:
        """Up to `limit` messages with id > after_id, oldest first."""
        raise NotImplementedError

    def ack(self, messages: Iterable[OutboxMessage]) -> int:
        """Remove acknowledged messages (ones dropped meanwhile are ignored); returns how many."""
        raise NotImplementedError

    def reject(self, message: OutboxMessage) -> bool:
        """Delete a message the broker will never take, counted as dropped; False if gone."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def oldest_created(self) -> float | None:
        raise NotImplementedError

    # -- counters ---------------------------------------------------------------------------------
    def depth(self) -> int:
        with self._lock:
            return self._depth

    def snapshot(self) -> OutboxSnapshot:
        oldest = self.oldest_created()
        with self._lock:
            counts = {name: PipelineCounts(c.next_seq, c.dropped, c.depth)
                      for name, c in self._counts.items()}
            return OutboxSnapshot(
                backend=self.backend, path=self.path, depth=self._depth, bytes=self._bytes,
                dropped=sum(c.dropped for c in counts.values()),
                oldest_age_s=None if oldest is None else max(0.0, round(time.time() - oldest, 3)),
                pipelines=counts,
            )

    def _counts_for(self, pipeline: str) -> PipelineCounts:
        counts = self._counts.get(pipeline)
        if counts is None:
            counts = self._counts[pipeline] = PipelineCounts()
        return counts

    def _over_bounds(self) -> bool:
        return self._depth > self.max_messages or self._bytes > self.max_bytes

    def _log_drops(self, dropped: dict[str, list[int]]) -> None:
        for pipeline, seqs in dropped.items():
            self._warn.warning(
                f"drop-{pipeline}",
                "outbox full (limits: %d results, %d bytes): dropped %d oldest result(s) of "
                "pipeline %s (seq %d..%d); %d dropped so far",
                self.max_messages, self.max_bytes, len(seqs), pipeline, min(seqs), max(seqs),
                self._counts_for(pipeline).dropped)


class MemoryOutbox(Outbox):
    """Same contract, nothing on disk: results survive outages but not a restart."""

    backend = "memory"

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        super().__init__(max_messages, max_bytes)
        self._messages: OrderedDict[int, tuple[OutboxMessage, float]] = OrderedDict()
        self._next_id = 1

    def append_many(self, pipeline: str, topic: str, qos: int,
                    encoders: Sequence[Encoder]) -> list[int]:
        seqs: list[int] = []
        errors: list[Exception] = []
        dropped: dict[str, list[int]] = {}
        with self._lock:
            counts = self._counts_for(pipeline)
            for encode in encoders:
                seq = counts.next_seq
                try:
                    payload = encode(seq)
                except Exception as exc:  # noqa: BLE001 - reported after the others are stored
                    errors.append(exc)
                    continue
                message = OutboxMessage(self._next_id, pipeline, seq, topic, qos, payload)
                self._next_id += 1
                counts.next_seq = seq + 1
                self._messages[message.id] = (message, time.time())
                counts.depth += 1
                self._depth += 1
                self._bytes += message.size
                seqs.append(seq)
                while self._over_bounds():
                    _, (old, _) = self._messages.popitem(last=False)
                    self._forget(old)
                    self._counts_for(old.pipeline).dropped += 1
                    dropped.setdefault(old.pipeline, []).append(old.seq)
        self._log_drops(dropped)
        if errors:
            raise EncodeErrors(seqs, errors)
        return seqs

    def _forget(self, message: OutboxMessage) -> None:
        self._counts_for(message.pipeline).depth -= 1
        self._depth -= 1
        self._bytes -= message.size

    def pending(self, after_id: int, limit: int) -> list[OutboxMessage]:
        with self._lock:
            out = []
            for message_id, (message, _) in self._messages.items():
                if message_id > after_id:
                    out.append(message)
                    if len(out) >= limit:
                        break
            return out

    def ack(self, messages: Iterable[OutboxMessage]) -> int:
        removed = 0
        with self._lock:
            for message in messages:
                if self._messages.pop(message.id, None) is not None:
                    self._forget(message)
                    removed += 1
        return removed

    def reject(self, message: OutboxMessage) -> bool:
        with self._lock:
            if self._messages.pop(message.id, None) is None:
                return False
            self._forget(message)
            self._counts_for(message.pipeline).dropped += 1
        return True

    def oldest_created(self) -> float | None:
        with self._lock:
            return next(iter(self._messages.values()))[1] if self._messages else None


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
        self._queue_cond = threading.Condition()  # group commit: results waiting, and who commits
        self._queue: list[_Pending] = []
        self._committing = False

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
        """Store results; returns once the transaction holding them is committed.

        Group commit: results that arrive while a commit (and its fsync) is under way, from other
        pipelines, wait and go into the next transaction together, one fsync for all of them.
        """
        items = [_Pending(pipeline, topic, qos, encode) for encode in encoders]
        if not items:
            return []
        last = items[-1]
        with self._queue_cond:
            self._queue.extend(items)
            while self._committing and not last.done:
                self._queue_cond.wait()
            if not last.done:
                self._committing = True  # this caller commits everything queued so far
                batch, self._queue = self._queue, []
            else:
                batch = []
        if batch:
            try:
                dropped = self._commit(batch)
            finally:
                with self._queue_cond:
                    for queued in batch:
                        if queued.seq < 0 and queued.error is None:  # _commit itself failed
                            queued.error = OutboxError("the commit holding this result failed")
                        queued.done = True
                    self._committing = False
                    self._queue_cond.notify_all()
            self._log_drops(dropped)
        failed = [item.error for item in items if item.error is not None]
        for error in failed:
            if isinstance(error, OutboxError):  # the commit itself failed, not an encoding
                raise error
        if failed:
            raise EncodeErrors([item.seq for item in items if item.error is None], failed)
        return [item.seq for item in items]

    def _commit(self, batch: list[_Pending]) -> dict[str, list[int]]:
        """One transaction for the batch: seq, rows, eviction beyond the bounds, counters."""
        with self._lock:
            db = self._db
            next_seq: dict[str, int] = {}
            stored: list[tuple[_Pending, int]] = []
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


# -- opening, with recovery -----------------------------------------------------------------------
def default_outbox_path(config_file: str | Path, environ: dict[str, str] | None = None) -> Path:
    """$STATE_DIRECTORY/outbox.sqlite under systemd (StateDirectory=), else next to the config file.

    Next to the config keeps one outbox per config (its seq counters belong to that config's
    pipelines), and a test's or a user's second config never shares a file with the first.
    """
    environ = os.environ if environ is None else environ
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / "outbox.sqlite"
    config = Path(config_file).resolve()
    return config.with_name(f"{config.stem}.outbox.sqlite")


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


SalvagedRow = tuple[str, int, str, int, bytes, float]  # pipeline, seq, topic, qos, payload, created


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
                 "loses the undelivered ones; set [mqtt] outbox_path to a writable place",
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
