"""The outbox file's format: its tables, version, integrity check and in-place migration.

`messages` holds one row per waiting result, in replay order (`id`, never reused); `pipelines`
holds per pipeline the next `seq`, the results dropped, and the seqs `reserved` for results a full
disk makes us drop (added in place to files written before it). `PRAGMA user_version` is the
format; a newer one is refused like a damaged file (recovery.py moves it aside).
"""

from __future__ import annotations

import sqlite3

from edge_runtime.publishing.outbox.base import OutboxError, SyncMode

FORMAT_VERSION = 1  # PRAGMA user_version of the file
SalvagedRow = tuple[str, int, str, int, bytes, float]  # pipeline, seq, topic, qos, payload, created

SCHEMA = """
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

UPSERT = ("INSERT INTO pipelines (name, next_seq, dropped, reserved) VALUES (?, ?, ?, ?) "
          "ON CONFLICT(name) DO UPDATE SET next_seq = excluded.next_seq, "
          "dropped = excluded.dropped, reserved = excluded.reserved")

INSERT_MESSAGE = ("INSERT INTO messages (pipeline, seq, topic, qos, payload, size, created) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?)")

DEPTH_BY_PIPELINE = (
    "SELECT pipeline, COUNT(*), COALESCE(SUM(size), 0) FROM messages GROUP BY pipeline")


def prepare(db: sqlite3.Connection, sync: SyncMode) -> None:
    """WAL journal, the sync mode, an integrity check, the tables (created or migrated)."""
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
    db.executescript(SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(pipelines)")}
    if "reserved" not in columns:  # written before the seq reservation
        db.execute("ALTER TABLE pipelines ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0")
    if version == 0:
        db.execute(f"PRAGMA user_version={FORMAT_VERSION}")
