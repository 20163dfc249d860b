"""The durable outbox on real sqlite files: seq, bounds, crashes, corrupt files."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO
from edge_runtime.publishing.outbox import (
    FORMAT_VERSION,
    EncodeErrors,
    MemoryOutbox,
    Outbox,
    SqliteOutbox,
    default_outbox_path,
    open_outbox,
)


def payload(seq: int, pad: int = 10) -> bytes:
    return json.dumps({"seq": seq, "pad": "x" * pad}).encode()


def fill(outbox: Outbox, pipeline: str, count: int, pad: int = 10) -> list[int]:
    return [outbox.append(pipeline, f"t/{pipeline}", 1, lambda s: payload(s, pad))
            for _ in range(count)]


def seqs(outbox: Outbox, pipeline: str | None = None) -> list[int]:
    return [m.seq for m in outbox.pending(0, 10**9) if pipeline in (None, m.pipeline)]


@pytest.fixture(params=["sqlite", "memory"])
def make_outbox(request, tmp_path):
    def factory(max_messages: int = 1000, max_bytes: int = 10**9) -> Outbox:
        if request.param == "memory":
            return MemoryOutbox(max_messages, max_bytes)
        return open_outbox(tmp_path / "outbox.sqlite", max_messages, max_bytes)
    return factory


def test_seq_is_per_pipeline_gap_free_and_replay_is_in_order(make_outbox):
    outbox = make_outbox()
    assert fill(outbox, "a", 3) == [0, 1, 2]
    assert fill(outbox, "b", 2) == [0, 1]
    assert fill(outbox, "a", 1) == [3]
    pending = outbox.pending(0, 100)
    assert [(m.pipeline, m.seq) for m in pending] == [("a", 0), ("a", 1), ("a", 2), ("b", 0),
                                                      ("b", 1), ("a", 3)]
    assert json.loads(pending[5].payload)["seq"] == 3  # the payload carries the assigned seq
    assert [m.seq for m in outbox.pending(pending[2].id, 2)] == [0, 1]  # window after a cursor
    assert outbox.ack(pending[:2]) == 2
    assert outbox.ack(pending[:2]) == 0  # a duplicate PUBACK (or a dropped row) changes nothing
    snap = outbox.snapshot()
    assert snap.depth == 4 and snap.pipelines["a"].depth == 2 and snap.pipelines["b"].depth == 2
    assert snap.bytes == sum(m.size for m in pending[2:])


def test_a_rejected_message_is_removed_and_counted_as_dropped(make_outbox):
    outbox = make_outbox()
    fill(outbox, "a", 3)
    poison = outbox.pending(0, 10)[1]
    assert outbox.reject(poison) and not outbox.reject(poison)
    assert seqs(outbox) == [0, 2]
    snap = outbox.snapshot()
    assert snap.pipelines["a"].dropped == 1 and snap.depth == 2


def test_message_bound_drops_the_oldest_and_counts_exactly(make_outbox):
    outbox = make_outbox(max_messages=5)
    fill(outbox, "a", 4)
    fill(outbox, "b", 4)
    # 8 appended, 5 kept: a/0..a/2 dropped, the newest five stay, in order.
    assert [(m.pipeline, m.seq) for m in outbox.pending(0, 100)] == [
        ("a", 3), ("b", 0), ("b", 1), ("b", 2), ("b", 3)]
    snap = outbox.snapshot()
    assert (snap.pipelines["a"].dropped, snap.pipelines["b"].dropped, snap.dropped) == (3, 0, 3)
    assert snap.depth == 5


def test_byte_bound_drops_the_oldest_and_counts_exactly(make_outbox):
    size = len(payload(0, 100)) + len("t/a")
    outbox = make_outbox(max_bytes=size * 3 + size // 2)  # room for three messages
    fill(outbox, "a", 10, pad=100)
    assert seqs(outbox) == [7, 8, 9]
    assert outbox.snapshot().dropped == 7 and outbox.snapshot().bytes == 3 * size
    # A single message larger than the whole budget cannot be kept either: counted, not stored.
    outbox.append("big", "t/big", 1, lambda s: b"x" * (size * 4))
    snap = outbox.snapshot()
    assert snap.pipelines["big"].dropped == 1 and snap.pipelines["a"].dropped == 10
    assert snap.depth == 0 and snap.bytes == 0


def test_seq_and_drop_counters_survive_a_restart(tmp_path):
    path = tmp_path / "o.sqlite"
    outbox = open_outbox(path, 3, 10**9)
    fill(outbox, "a", 5)
    acked = outbox.pending(0, 1)
    outbox.ack(acked)
    outbox.close()
    again = open_outbox(path, 3, 10**9)
    assert seqs(again) == [3, 4]
    assert fill(again, "a", 1) == [5]
    snap = again.snapshot()
    assert snap.pipelines["a"].dropped == 2 and snap.pipelines["a"].next_seq == 6
    assert snap.depth == 3


def test_a_committed_result_survives_kill_9(tmp_path):
    """The child commits results and SIGKILLs itself without closing anything."""
    path = tmp_path / "o.sqlite"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from edge_runtime.publishing.outbox import open_outbox
        outbox = open_outbox(__import__("pathlib").Path({str(path)!r}), 10**6, 10**9)
        for i in range(300):
            seq = outbox.append("p", "t", 1, lambda s: str(s).encode())
        outbox.ack(outbox.pending(0, 100))
        print(seq, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -9, done.stderr
    assert done.stdout.strip() == "299"
    assert (tmp_path / "o.sqlite-wal").exists()  # nothing was checkpointed or closed
    outbox = open_outbox(path, 10**6, 10**9)
    assert seqs(outbox) == list(range(100, 300))
    assert fill(outbox, "p", 1) == [300]


def corrupt_random(path: Path) -> None:
    path.write_bytes(os.urandom(50_000))


def corrupt_truncated(path: Path) -> None:
    outbox = SqliteOutbox(path, 10**6, 10**9, sync="normal")  # no fsync per row: a fast setup
    fill(outbox, "a", 2000, pad=200)
    outbox.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_directory(path: Path) -> None:
    path.mkdir()
    (path / "junk").write_text("x")


@pytest.mark.parametrize("damage", [corrupt_random, corrupt_truncated, corrupt_directory],
                         ids=["random-bytes", "truncated", "directory"])
def test_unusable_file_is_moved_aside_and_a_fresh_outbox_starts(tmp_path, caplog, damage):
    path = tmp_path / "outbox.sqlite"
    damage(path)
    with caplog.at_level(logging.ERROR):
        outbox = open_outbox(path, 10**6, 10**9)
    assert outbox.backend == "sqlite" and path.is_file()
    aside = list(tmp_path.glob("outbox.sqlite.corrupt-*"))
    assert len(aside) == 1
    assert f"moved it to {aside[0]}" in caplog.text and "UNUSABLE" in caplog.text
    # Only the truncated file still had its seq counters; otherwise the log warns of the restart.
    assert ("seq starts again at 0" in caplog.text) == (damage is not corrupt_truncated)
    fill(outbox, "b", 2)
    outbox.close()
    assert seqs(open_outbox(path, 10**6, 10**9), "b") == [0, 1]


def test_truncated_file_keeps_its_seq_counters_and_the_readable_results(tmp_path, caplog):
    path = tmp_path / "outbox.sqlite"
    corrupt_truncated(path)
    outbox = open_outbox(path, 10**6, 10**9)
    kept = seqs(outbox, "a")
    assert 0 < len(kept) < 2000 and kept == list(range(len(kept)))  # a prefix, in order
    # Without its counter, seq would restart at 0 and consumers would drop new results as dups.
    assert fill(outbox, "a", 1) == [2000]
    assert f"salvaged {len(kept)} undelivered result(s)" in caplog.text


def test_a_file_from_a_newer_version_is_moved_aside(tmp_path, caplog):
    path = tmp_path / "outbox.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={FORMAT_VERSION + 1}")
    db.close()
    outbox = open_outbox(path, 100, 10**9)
    assert outbox.backend == "sqlite" and "newer edge-runtime" in caplog.text


def test_only_the_newest_corrupt_copies_are_kept(tmp_path):
    path = tmp_path / "outbox.sqlite"
    for _ in range(5):
        corrupt_random(path)
        open_outbox(path, 100, 10**9).close()
    assert len(list(tmp_path.glob("outbox.sqlite.corrupt-*"))) == 3


def test_no_writable_place_falls_back_to_memory_and_says_so(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the outbox directory should be")
    outbox = open_outbox(blocker / "outbox.sqlite", 100, 10**9)
    assert outbox.backend == "memory"
    assert "keeping results in memory only" in caplog.text
    assert fill(outbox, "a", 2) == [0, 1]


def test_default_path_is_the_systemd_state_directory_else_next_to_the_config(tmp_path):
    config = tmp_path / "site.toml"
    assert default_outbox_path(config, {}) == tmp_path / "site.outbox.sqlite"
    assert default_outbox_path(config, {"STATE_DIRECTORY": "/var/lib/edge-runtime:/x"}) == \
        Path("/var/lib/edge-runtime/outbox.sqlite")


def test_disk_full_drops_are_counted_and_writing_resumes(tmp_path, caplog):
    """SQLite's own "database or disk is full" (a page budget stands in for a full disk): the
    oldest results make room for the new ones, every one counted."""
    path = tmp_path / "o.sqlite"
    outbox = SqliteOutbox(path, 10**6, 10**9, sync="normal")
    outbox._db.execute("PRAGMA max_page_count=12")  # noqa: SLF001 - the file cannot grow past 12 pages
    assigned = fill(outbox, "a", 60, pad=1000)
    assert assigned == list(range(60))  # seq is consumed either way: the gap shows the loss
    snap = outbox.snapshot()
    stored = seqs(outbox)
    assert 0 < snap.depth == len(stored) < 60
    assert snap.pipelines["a"].dropped == 60 - len(stored)
    assert "the disk is full: dropped" in caplog.text
    outbox.ack(outbox.pending(0, 1000))  # the broker caught up: room again
    assert fill(outbox, "a", 1) == [60] and seqs(outbox) == [60]
    outbox.close()
    again = open_outbox(path, 10**6, 10**9)  # the drops counted while full survive a restart
    assert again.snapshot().pipelines["a"].dropped == 60 - len(stored)


def test_concurrent_pipelines_share_commits_and_keep_their_own_seq(tmp_path):
    """Four pipelines append at once (group commit): every result stored, each seq gap-free."""
    import threading

    outbox = open_outbox(tmp_path / "o.sqlite", 10**6, 10**9)
    returned: dict[str, list[int]] = {}

    def produce(name: str) -> None:
        returned[name] = fill(outbox, name, 150)

    threads = [threading.Thread(target=produce, args=(f"p{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    outbox.close()
    reopened = open_outbox(tmp_path / "o.sqlite", 10**6, 10**9)
    for i in range(4):
        assert returned[f"p{i}"] == list(range(150))
        assert seqs(reopened, f"p{i}") == list(range(150))
        assert [json.loads(m.payload)["seq"] for m in reopened.pending(0, 10**6)
                if m.pipeline == f"p{i}"] == list(range(150))


def test_a_result_that_cannot_be_encoded_fails_alone(tmp_path):
    outbox = open_outbox(tmp_path / "o.sqlite", 100, 10**9)
    fill(outbox, "a", 1)

    def broken(seq: int) -> bytes:
        raise ValueError("Out of range float values are not JSON compliant")

    with pytest.raises(ValueError, match="JSON compliant"):
        outbox.append("a", "t/a", 1, broken)
    assert fill(outbox, "a", 1) == [1]  # no seq was consumed by the failed one
    assert seqs(outbox) == [0, 1]


def test_a_batch_is_one_transaction_in_order_and_a_bad_result_fails_alone(make_outbox):
    outbox = make_outbox()
    fill(outbox, "a", 2)

    def broken(seq: int) -> bytes:
        raise ValueError("Out of range float values are not JSON compliant")

    good = lambda s: payload(s)  # noqa: E731
    assert outbox.append_many("a", "t/a", 1, [good, good, good]) == [2, 3, 4]
    with pytest.raises(EncodeErrors, match="1 result.*JSON compliant") as failed:
        outbox.append_many("a", "t/a", 1, [good, broken, good])
    # the batch's good results are stored, in order, and the failed one consumed no seq
    assert failed.value.stored == [5, 6] and len(failed.value.errors) == 1
    assert seqs(outbox) == [0, 1, 2, 3, 4, 5, 6]
    assert [json.loads(m.payload)["seq"] for m in outbox.pending(0, 100)] == list(range(7))
    assert outbox.append_many("a", "t/a", 1, []) == []


SYNCS_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from edge_runtime.publishing.outbox import SqliteOutbox

    path, sync = Path(sys.argv[1]), sys.argv[2]
    body = lambda seq: json.dumps({"seq": seq}).encode()
    outbox = SqliteOutbox(path, 10**6, 10**9, sync=sync)
    outbox.append("a", "t/a", 1, body)  # the WAL exists and has its header
    os.path.exists("/MARK-batch")  # markers in the system-call trace
    outbox.append_many("a", "t/a", 1, [body] * 50)
    os.path.exists("/MARK-singles")
    for _ in range(50):
        outbox.append("a", "t/a", 1, body)
    os.path.exists("/MARK-end")
    outbox.close()
""")


def file_syncs(tmp_path: Path, sync: str) -> dict[str, int]:
    """fsync/fdatasync system calls made by a real outbox, counted by strace: for one batch of
    50 results, and for 50 results appended one by one."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace not installed (deploy/dev-setup.sh installs it)")
    trace = tmp_path / f"trace-{sync}"
    done = subprocess.run(
        [strace, "-f", "-qq", "-o", str(trace), "-e", "trace=fsync,fdatasync,stat,newfstatat,statx",
         sys.executable, "-c", SYNCS_SCRIPT, str(tmp_path / f"o-{sync}.sqlite"), sync],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    counts: dict[str, int] = {}
    phase = "open"
    for line in trace.read_text().splitlines():
        if "/MARK-" in line:
            phase = line.split("/MARK-")[1].split('"')[0]
        elif "fsync(" in line or "fdatasync(" in line:
            counts[phase] = counts.get(phase, 0) + 1
    return counts


def test_a_batch_commits_with_one_fsync(tmp_path):
    """What makes a fast sensor pipeline possible: N results, one transaction, one flush to the
    storage (counted as the system calls the real outbox makes, not inferred from a setting)."""
    full = file_syncs(tmp_path, "full")
    assert full.get("batch", 0) == 1, full  # 50 results, one flush (and not zero: durable)
    assert full.get("singles", 0) >= 50, full  # one flush per commit when results come alone
    # sync = "normal" does not flush at commit: the counting above would see it.
    normal = file_syncs(tmp_path, "normal")
    assert normal.get("batch", 0) == 0 and normal.get("singles", 0) < 50, normal


@pytest.mark.parametrize("table,key,value,message", [
    ("outbox", "sync", "fast", "must be one of 'full', 'normal'"),
    ("outbox", "max_messages", 0, "must be >= 1"),
    ("mqtt", "max_inflight", 0, "must be >= 1"),
    ("stats", "interval", 0.1, "must be >= 1.0"),
])
def test_outbox_settings_are_checked_with_the_key_named(tmp_path, table, key, value, message):
    from conftest import digits_pipeline, write_config
    from edge_runtime.app_config import load_config
    from edge_runtime.config.typed import ConfigError

    config = write_config(tmp_path / "c.toml", None, [digits_pipeline()], **{table: {key: value}})
    with pytest.raises(ConfigError, match=f"{table}.{key}: {message}"):
        load_config(config)
