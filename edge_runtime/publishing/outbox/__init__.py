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

    base.py          the contract (Outbox), its value types, shared counters
    memory.py        MemoryOutbox
    sqlite.py        SqliteOutbox: seq per batch, eviction, a refused commit, ack, reject
    sqlite_store.py  SqliteStore under it: connections, transactions, counters on disk, deletes
    schema.py        the file format: tables, version, integrity check, migration
    size_bound.py    the files within max_bytes; a nearly full disk reuses freed pages
    group_commit.py  who commits a batch while others wait
    recovery.py      open_outbox: quick_check, move aside, salvage, memory fallback
    paths.py         default_outbox_path, configured_outbox_path
    owner.py         claim: the exclusive lock one daemon holds on its outbox for its life
    reserve.py       Reserve: disk room kept for housekeeping, given up when the disk is full
"""

from edge_runtime.publishing.outbox.base import (
    EncodeErrors,
    Encoder,
    Outbox,
    OutboxError,
    OutboxMessage,
    OutboxSnapshot,
    PipelineCounts,
    SyncMode,
)
from edge_runtime.publishing.outbox.memory import MemoryOutbox
from edge_runtime.publishing.outbox.owner import OutboxInUse, OutboxOwner, claim
from edge_runtime.publishing.outbox.paths import configured_outbox_path, default_outbox_path
from edge_runtime.publishing.outbox.recovery import move_aside, open_outbox, salvage
from edge_runtime.publishing.outbox.sqlite import FORMAT_VERSION, SqliteOutbox

__all__ = [
    "FORMAT_VERSION", "EncodeErrors", "Encoder", "MemoryOutbox", "Outbox", "OutboxError",
    "OutboxInUse", "OutboxMessage", "OutboxOwner", "OutboxSnapshot", "PipelineCounts",
    "SqliteOutbox", "SyncMode", "claim", "configured_outbox_path", "default_outbox_path",
    "move_aside", "open_outbox", "salvage",
]
