"""A full disk does not break the outbox (issue 12, scenario 3), on a real 2 MB file system.

Before: with the broker down, the WAL alone filled a 2 MB disk after 156 results (the database
stayed 4 KB); deletes failed for good, so every later result was dropped, even with the broker
back and the disk freed; a restart put `seq` and `dropped` back to the last successful commit,
handing the same seqs out again. Now the WAL is bounded and checkpointed, a nearly full disk makes
new results reuse the pages of old ones (dropped and counted), deletes always fit, failed deletes
are retried, counters never go back, and the daemon recovers by itself when space returns.

The tests mount a tmpfs of 2 MB (root only); elsewhere they are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import digits_pipeline, outbox_state, wait_until, write_config

from edge_runtime.publishing.outbox import open_outbox

DISK = 2 * 1024 * 1024
RESULTS = "edge/test-pi/digits/result"
BODY = {"schema": 1, "device": "pi", "pipeline": "p", "ts": "2026-12-02T10:00:00.000Z",
        "classes": [{"index": 3, "label": "happy", "score": 0.99}] * 3}


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A real 2 MB tmpfs; skipped where mounting is not permitted."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs",
                           str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here (needs root and CAP_SYS_ADMIN): "
                    f"{done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill_disk(path: Path) -> int:
    """Write `path` until the file system refuses; its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return path.stat().st_size


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def outbox_files(path: Path, *suffixes: str) -> int:
    """Bytes of the outbox's database and WAL (and the other files named by suffix)."""
    return sum(p.stat().st_size for p in (path.with_name(path.name + s)
                                          for s in ("", "-wal", *suffixes)) if p.exists())


def encoder(seq: int) -> bytes:
    return json.dumps({**BODY, "seq": seq}).encode()


def test_a_full_disk_is_survived_and_counted_and_space_is_reused(tiny_fs):
    path = tiny_fs / "outbox.sqlite"
    outbox = open_outbox(path, 10**5, 64 * 1024 * 1024)  # the default budget, bigger than the disk
    assert outbox.backend == "sqlite"
    handed: list[int] = []

    def produce(n: int) -> None:
        for _ in range(n):
            handed.append(outbox.append("p", "t", 1, encoder))  # never raises: stored or counted

    produce(500)  # today's main: the WAL alone fills the disk after 156 results
    snap = outbox.snapshot()
    assert (snap.depth, snap.dropped) == (500, 0)
    assert outbox_files(path) < DISK // 2  # the WAL is checkpointed and cut back

    filler = tiny_fs / "filler"
    assert fill_disk(filler) > 0 and free_bytes(tiny_fs) < 64 * 1024
    produce(300)  # the oldest make room for the newest
    snap = outbox.snapshot()
    assert snap.dropped > 0 and snap.depth > 0
    assert snap.depth + snap.dropped == 800

    delivered = outbox.pending(0, 100)
    assert outbox.ack(delivered) == 100  # deletes fit on the full disk
    dropped = outbox.snapshot().dropped
    produce(50)  # ... and the pages they freed are reused at once: nothing more dropped
    assert outbox.snapshot().dropped == dropped

    before = outbox.snapshot()
    outbox.close()  # a restart while the disk is still full
    outbox = open_outbox(path, 10**5, 64 * 1024 * 1024)
    after = outbox.snapshot()
    assert after.pipelines["p"].next_seq >= before.pipelines["p"].next_seq
    assert after.dropped >= before.dropped and after.depth == before.depth

    filler.unlink()  # space is back
    produce(100)
    while batch := outbox.pending(0, 50):
        outbox.ack(batch)
    snap = outbox.snapshot()
    assert snap.depth == 0 and snap.dropped == dropped
    assert handed == list(range(len(handed)))  # no seq twice, none skipped: gaps are the drops
    outbox.close()
    assert outbox_state(path) == (0, {"p": len(handed)})


def test_the_outbox_stays_within_max_bytes_wal_included(tiny_fs):
    path = tiny_fs / "outbox.sqlite"
    budget = 512 * 1024
    outbox = open_outbox(path, 10**5, budget)
    largest = 0
    for _ in range(4000):
        outbox.append("p", "t", 1, encoder)
        largest = max(largest, outbox_files(path, ".reserve"))
    snap = outbox.snapshot()
    outbox.close()
    assert snap.dropped > 0 and snap.depth + snap.dropped == 4000
    assert largest <= budget, f"database, WAL and reserve reached {largest} bytes, max_bytes is {budget}"


def test_the_daemon_recovers_by_itself_when_space_returns(tmp_path, tiny_fs, durable_broker,
                                                          durable_subscriber, start_daemon):
    # The subscriber's session (persistent broker, clean_start false) is there before the broker
    # goes away: the daemon delivers the moment the broker is back, and every seq it delivers must
    # reach us, so a seq we never see is one the outbox lost, not one sent before we subscribed.
    sub = durable_subscriber
    durable_broker.stop()  # the broker is away while the disk fills
    outbox = tiny_fs / "outbox.sqlite"
    config = write_config(tmp_path / "c.toml", durable_broker, [digits_pipeline(loop=True, fps=50)],
                          outbox={"path": str(outbox)})
    daemon = start_daemon(config)
    wait_until(lambda: outbox_state(outbox)[0] >= 50, 60)
    filler = tiny_fs / "filler"
    fill_disk(filler)
    wait_until(lambda: "the disk is full: dropped" in daemon.log, 60)
    filler.unlink()
    durable_broker.start()
    # Delivery resumes and the outbox empties while results keep coming.
    wait_until(lambda: len(sub.seqs()) >= 100 and outbox_state(outbox)[0] < 20, 90)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log
    assert "not acknowledged" not in daemon.log, daemon.log  # no delivered row left behind
    assert outbox_state(outbox)[0] == 0
    next_seq, dropped = counters(outbox)
    assert dropped > 0

    again = start_daemon(config)
    wait_until(lambda: max(sub.seqs(), default=-1) >= next_seq, 60)
    again.signal(signal.SIGTERM)
    assert again.wait(30) == 0, again.log
    assert outbox_state(outbox)[0] == 0, again.log  # the stop delivered everything
    later_seq, later_dropped = counters(outbox)
    assert later_seq > next_seq and later_dropped >= dropped  # never back across the restart
    # The broker acknowledged the last result before the daemon exited; it reaches us in order.
    wait_until(lambda: later_seq - 1 in sub.seqs(), 30)
    by_seq: dict[int, dict] = {}
    for message in sub.on(RESULTS):
        seq = message["seq"]
        assert by_seq.setdefault(seq, message) == message, f"seq {seq} names two results"
    # every seq is a delivered result or a counted drop
    missing = sorted(set(range(later_seq)) - set(by_seq))
    assert len(missing) <= later_dropped, f"seqs {missing} neither delivered nor counted as dropped"


def counters(path: Path) -> tuple[int, int]:
    """(next seq, dropped) of the digits pipeline in a stopped daemon's outbox."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT next_seq, dropped FROM pipelines WHERE name = 'digits'").fetchone()
    finally:
        db.close()


def test_a_delete_that_fails_is_retried_and_the_row_is_not_sent_again(tmp_path):
    """A delete the database refuses (here: another connection holds the write lock, as a full
    disk refuses it) leaves delivered rows behind: they no longer count as waiting, are not
    handed out again, and go with the next write."""
    path = tmp_path / "o.sqlite"
    outbox = open_outbox(path, 1000, 10**9)
    for _ in range(10):
        outbox.append("p", "t", 1, encoder)
    outbox._db.execute("PRAGMA busy_timeout=50")  # noqa: SLF001 - fail fast instead of 5 s
    delivered = outbox.pending(0, 5)
    blocker = sqlite3.connect(str(path), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    assert outbox.ack(delivered) == 5
    assert outbox.depth() == 5  # delivered: not waiting, although still in the file
    assert [m.seq for m in outbox.pending(0, 100)] == [5, 6, 7, 8, 9]
    assert outbox_state(path)[0] == 10
    blocker.execute("ROLLBACK")
    blocker.close()
    outbox.append("p", "t", 1, encoder)  # the next write deletes them
    assert outbox_state(path)[0] == 6 and outbox.depth() == 6
    outbox.close()


def drop_one(path: Path):
    """An outbox whose second result the full database refused (it got seq 1, from a block)."""
    outbox = open_outbox(path, 1000, 10**9)
    assert outbox.append("p", "t", 1, encoder) == 0
    outbox.ack(outbox.pending(0, 10))
    pages = outbox._db.execute("PRAGMA page_count").fetchone()[0]  # noqa: SLF001
    outbox._db.execute(f"PRAGMA max_page_count={pages}")  # noqa: SLF001 - the file cannot grow
    big = b"x" * 20000  # needs overflow pages: the full file refuses it, nothing to evict
    assert outbox.append("p", "t", 1, lambda seq: big + str(seq).encode()) == 1
    assert outbox.snapshot().pipelines["p"].dropped == 1
    return outbox


def test_a_seq_given_to_a_dropped_result_is_never_given_again(tmp_path):
    """A result the full database cannot take is dropped with a seq from a block reserved on disk
    first: a start after a crash continues past the block, so no seq names two results."""
    path = tmp_path / "o.sqlite"
    outbox = drop_one(path)
    crash = tmp_path / "crash"  # the files as kill -9 would leave them
    crash.mkdir()
    for suffix in ("", "-wal"):
        shutil.copy(path.with_name(path.name + suffix), crash / ("o.sqlite" + suffix))
    after_crash = open_outbox(crash / "o.sqlite", 1000, 10**9)
    counts = after_crash.snapshot().pipelines["p"]
    assert (counts.next_seq, counts.dropped) == (1001, 1)
    after_crash.close()
    outbox.close()  # a clean stop writes the exact next seq and releases the block
    again = open_outbox(path, 1000, 10**9)
    counts = again.snapshot().pipelines["p"]
    assert (counts.next_seq, counts.dropped) == (2, 1)
    again.close()
