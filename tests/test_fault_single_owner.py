"""One outbox, one daemon (issue 12, scenario 7).

Two daemons on one config shared the client id (knocking each other off the broker) and the outbox
file, handing the same `seq` to two different results. The outbox is locked for the daemon's
life: a second daemon exits at once with an error naming the outbox and the holder's pid, before
it touches the outbox or the broker; once the first one stops, a new start works.
"""

from __future__ import annotations

import json
import signal

from conftest import digits_pipeline, wait_until, write_config

RESULT = "edge/test-pi/digits/result"


def test_a_second_daemon_on_the_same_outbox_exits_naming_the_holder(
        tmp_path, mosquitto, subscribe, start_daemon):
    sub = subscribe(RESULT)
    outbox = tmp_path / "shared.outbox.sqlite"
    config = write_config(tmp_path / "c.toml", mosquitto, [digits_pipeline(loop=True, fps=10)],
                          outbox={"path": str(outbox)})
    first = start_daemon(config)
    wait_until(lambda: len(sub.on(RESULT)) >= 5, 60)
    second = start_daemon(config)
    code = second.wait(30)  # today's main: runs on beside the first one
    assert code != 0, second.log
    assert str(outbox) in second.log and f"pid {first.process.pid}" in second.log, second.log
    assert "connected to broker" not in second.log and "running" not in second.log, second.log
    seen = len(sub.on(RESULT))
    wait_until(lambda: len(sub.on(RESULT)) >= seen + 10, 30)  # the first one carries on
    assert first.process.poll() is None
    assert first.log.count("connected to broker") == 1, first.log  # never knocked off
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0, first.log

    third = start_daemon(config)  # the lock went with the first daemon
    before = len(sub.on(RESULT))
    wait_until(lambda: len(sub.on(RESULT)) >= before + 5, 60)
    third.signal(signal.SIGTERM)
    assert third.wait(30) == 0, third.log
    seqs = [json.loads(p)["seq"] for p in sub.on(RESULT)]
    # at least once: a seq may come twice (a resend), but always with the same result
    by_seq: dict[int, bytes] = {}
    for payload in sub.on(RESULT):
        seq = json.loads(payload)["seq"]
        assert by_seq.setdefault(seq, payload) == payload, f"seq {seq} carries two results"
    assert sorted(set(seqs)) == list(range(max(seqs) + 1))


def test_the_lock_names_the_holder_in_process(tmp_path):
    import pytest

    from edge_runtime.publishing.outbox.owner import OutboxInUse, claim

    path = tmp_path / "o.sqlite"
    with claim(path):
        with pytest.raises(OutboxInUse, match=r"in use by .*pid \d+"):
            with claim(path):
                pass
    with claim(path):  # released on exit
        pass
