"""Never lose a result: broker outages, kill -9, overflow, corrupt outbox, garbage input.

Real faults against the daemon as users run it (a subprocess), a real mosquitto that the tests
stop and restart, and a persistent MQTT v5 subscriber (clean_start false, session expiry) that
sees every seq, so a gap is a loss, never a subscriber that was away.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from conftest import (
    VIBRATION_MODEL,
    Broker,
    digits_pipeline,
    outbox_state,
    produced,
    wait_until,
    write_config,
)
from edge_runtime.publishing.outbox import SqliteOutbox

RESULTS = "edge/test-pi/digits/result"
STATS = "edge/test-pi/stats"


def assert_complete(got: list[int], total: int) -> int:
    """Every seq 0..total-1 arrived, first arrivals in order; returns the number of duplicates."""
    assert total > 0
    missing = sorted(set(range(total)) - set(got))
    assert not missing, f"lost seq {missing[:20]} of {total}"
    first: list[int] = []
    seen: set[int] = set()
    for seq in got:
        if seq not in seen:
            seen.add(seq)
            first.append(seq)
    assert first == sorted(first), "results overtook each other"
    return len(got) - len(seen)


def streaming_config(tmp_path: Path, broker: Broker, pipelines: tuple[str, ...] = ("digits",),
                     **mqtt_extra: Any) -> tuple[Path, Path]:
    outbox = tmp_path / "outbox.sqlite"
    settings = {"max_inflight": 20}
    settings.update(mqtt_extra)
    config = write_config(tmp_path / "config.toml", broker,
                          [digits_pipeline(name, loop=True, fps=25.0) for name in pipelines],
                          mqtt_extra=settings, outbox={"path": str(outbox)}, stats={"interval": 1.0})
    return config, outbox


def test_broker_outage_during_a_stream_loses_nothing(tmp_path, durable_broker, durable_subscriber,
                                                    start_daemon):
    """Two pipelines stream at once; each must arrive complete and in its own seq order."""
    sub = durable_subscriber
    names = ("digits", "digits2")
    topics = {name: f"edge/test-pi/{name}/result" for name in names}
    config, outbox = streaming_config(tmp_path, durable_broker, pipelines=names)
    daemon = start_daemon(config)
    wait_until(lambda: all(len(sub.seqs(t)) >= 10 for t in topics.values()), 30)
    durable_broker.stop()
    # The pipelines keep producing; the results wait on disk (several seconds' worth).
    wait_until(lambda: outbox_state(outbox)[0] >= 120, 30)
    durable_broker.start()
    during_outage = {name: produced(outbox, name) for name in names}
    wait_until(lambda: all(max(sub.seqs(topics[n]), default=-1) >= during_outage[n] + 10
                           for n in names), 60)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log
    assert outbox_state(outbox)[0] == 0
    assert "lost the broker connection" in daemon.log
    # The stats were published again after the reconnect and at the end, and say what happened.
    totals = {name: produced(outbox, name) for name in names}
    last = wait_until(lambda: [s for s in sub.on(STATS) if all(
        s["pipelines"][n]["results"] == totals[n] for n in names)], 20)[-1]
    assert last["mqtt"]["connects"] >= 2 and last["mqtt"]["disconnects"] >= 1
    stats = sub.on(STATS)
    for name in names:
        total = totals[name]
        wait_until(lambda t=topics[name], n=total: len(set(sub.seqs(t))) >= n, 20)
        duplicates = assert_complete(sub.seqs(topics[name]), total)
        print(f"{name}: {total} results across a broker outage, {duplicates} duplicate(s)")
        assert last["pipelines"][name]["dropped"] == 0
        assert last["pipelines"][name]["results"] == total
        assert any(s["pipelines"][name]["results_per_s"] > 0 for s in stats)


def test_dropped_connections_resend_only_what_was_unacknowledged(tmp_path, mosquitto, subscribe,
                                                                 start_daemon):
    """The broker drops the daemon's connection (a client takes over its id) mid-stream, thrice.

    The broker and subscriber stay up, so every duplicate the subscriber sees was re-sent by the
    daemon: at most the results in flight (`max_inflight`) per dropped connection, and never more
    than the daemon says it re-sent (paho's own re-send of its in-flight copies would add more).
    """
    sub = subscribe(RESULTS, STATS)
    outbox = tmp_path / "outbox.sqlite"
    window = 20
    config = write_config(tmp_path / "config.toml", mosquitto, [digits_pipeline(loop=True)],
                          mqtt_extra={"max_inflight": window}, stats={"interval": 1.0},
                          outbox={"path": str(outbox), "sync": "normal"})
    daemon = start_daemon(config)
    for round_ in range(3):
        wait_until(lambda n=100 * (round_ + 1): len(sub.json_on(RESULTS)) >= n, 30)
        intruder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-runtime-test-pi")
        intruder.connect(mosquitto.host, mosquitto.port)
        intruder.loop(1.0)  # CONNACK: the broker has dropped the daemon's connection
        intruder.disconnect()
    wait_until(lambda: "lost the broker connection" in daemon.log, 10)
    wait_until(lambda: len(sub.json_on(RESULTS)) >= 400, 30)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log
    total = produced(outbox)
    wait_until(lambda: len(set(r["seq"] for r in sub.json_on(RESULTS))) >= total, 20)
    got = [r["seq"] for r in sub.json_on(RESULTS)]
    duplicates = assert_complete(got, total)
    final = wait_until(lambda: [s for s in sub.json_on(STATS)
                                if s["pipelines"]["digits"]["results"] == total], 20)[-1]
    resent, disconnects = final["mqtt"]["resent"], final["mqtt"]["disconnects"]
    print(f"{total} results, {disconnects} dropped connection(s), {resent} re-sent, "
          f"{duplicates} duplicate(s)")
    assert disconnects >= 1
    assert duplicates <= resent <= window * disconnects


@pytest.mark.parametrize("broker_up", [True, False], ids=["broker-up", "broker-down"])
def test_kill_9_mid_stream_leaves_no_gap_after_restart(tmp_path, durable_broker, durable_subscriber,
                                                       start_daemon, broker_up):
    sub = durable_subscriber
    config, outbox = streaming_config(tmp_path, durable_broker)
    first = start_daemon(config)
    wait_until(lambda: len(sub.seqs()) >= 15, 30)
    if not broker_up:
        durable_broker.stop()
        wait_until(lambda: outbox_state(outbox)[0] >= 25, 30)  # a backlog on disk
    first.signal(signal.SIGKILL)
    first.wait(10)
    before = produced(outbox)
    if not broker_up:
        durable_broker.start()
    second = start_daemon(config)
    wait_until(lambda: max(sub.seqs(), default=-1) >= before + 10, 60)
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0, second.log
    total = produced(outbox)
    wait_until(lambda: len(set(sub.seqs())) >= total, 20)
    duplicates = assert_complete(sub.seqs(), total)
    print(f"{total} results across kill -9 ({'broker up' if broker_up else 'backlog'}), "
          f"{duplicates} duplicate(s)")
    if not broker_up:
        assert "undelivered result(s) from before" in second.log
        assert "result(s) from an earlier run" in connect_line(second.log), second.log
    assert "earlier run" not in connect_line(first.log), first.log  # a brand-new outbox


def connect_line(log: str) -> str:
    """The daemon's first "connected to broker" log line (what it has to send)."""
    return next((line for line in log.splitlines() if "connected to broker" in line), "")


def test_overflow_with_the_broker_down_is_counted_exactly(tmp_path, durable_broker,
                                                          durable_subscriber, start_daemon):
    sub = durable_subscriber
    outbox = tmp_path / "outbox.sqlite"
    config = write_config(tmp_path / "config.toml", durable_broker, [digits_pipeline(fps=25.0)],
                          outbox={"path": str(outbox), "max_messages": 5},
                          stats={"interval": 1.0})
    durable_broker.stop()
    daemon = start_daemon(config)
    wait_until(lambda: produced(outbox) == 20, 30)  # every sample image has its result
    assert outbox_state(outbox)[0] == 5
    durable_broker.start()
    assert daemon.wait(30) == 0, daemon.log  # file source done: flush, then exit
    wait_until(lambda: len(sub.seqs()) >= 5, 20)
    assert sub.seqs() == [15, 16, 17, 18, 19]  # the newest five; the 15 oldest were dropped
    final = wait_until(lambda: [s for s in sub.on(STATS) if s["outbox"]["depth"] == 0], 20)[-1]
    assert final["pipelines"]["digits"]["dropped"] == 15
    assert final["outbox"]["dropped"] == 15
    assert final["pipelines"]["digits"]["results"] == 20
    assert "outbox full" in daemon.log and "dropped" in daemon.log
    # A brand-new outbox: what waits at the first connection is this run's, not leftovers.
    assert "to send: 5 produced while connecting" in connect_line(daemon.log), daemon.log
    assert "earlier run" not in daemon.log, daemon.log


def write_random(path: Path) -> int:
    path.write_bytes(bytes(range(256)) * 200)
    return 0


def write_truncated(path: Path) -> int:
    """A real outbox with 400 undelivered results of the pipeline, cut in half."""
    outbox = SqliteOutbox(path, 10**6, 10**9, sync="normal")
    for _ in range(400):
        outbox.append("digits", RESULTS, 1,
                      lambda s: json.dumps({"seq": s, "pad": "x" * 300}).encode())
    outbox.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return 400


@pytest.mark.parametrize("damage", [write_random, write_truncated], ids=["random", "truncated"])
def test_corrupt_outbox_at_start_is_moved_aside_and_the_daemon_runs(
        tmp_path, mosquitto, subscribe, start_daemon, damage):
    sub = subscribe(RESULTS)
    outbox = tmp_path / "outbox.sqlite"
    old_results = damage(outbox)
    config = write_config(tmp_path / "config.toml", mosquitto, [digits_pipeline()],
                          outbox={"path": str(outbox)})
    daemon = start_daemon(config)
    assert daemon.wait(60) == 0, daemon.log
    aside = list(tmp_path.glob("outbox.sqlite.corrupt-*"))
    assert len(aside) == 1 and f"moved it to {aside[0]}" in daemon.log
    assert "IS UNUSABLE" in daemon.log
    wait_until(lambda: len(sub.json_on(RESULTS)) >= 20, 20)
    seqs = [r["seq"] for r in sub.json_on(RESULTS)]
    new = seqs[-20:]
    # The truncated file's counter was salvaged: seq continues after the old results.
    assert new == list(range(old_results, old_results + 20))
    salvaged = seqs[:-20]
    assert salvaged == list(range(len(salvaged)))
    assert f"salvaged {len(salvaged)} undelivered result(s)" in daemon.log


def test_garbage_on_a_sensor_topic_is_counted_and_good_readings_still_work(
        tmp_path, mosquitto, subscribe, start_daemon):
    """Huge, deeply nested, non-UTF-8, non-finite and wrongly shaped payloads among good ones."""
    sub = subscribe("edge/test-pi/vib/result", STATS)
    config = write_config(tmp_path / "c.toml", mosquitto, [{
        "name": "vib",
        "source": {"type": "mqtt", "topic": "sensors/vib", "max_payload_bytes": 65536},
        "model": {"path": str(VIBRATION_MODEL)},
    }], outbox={"path": str(tmp_path / "o.sqlite")}, stats={"interval": 1.0})
    daemon = start_daemon(config)
    wait_until(lambda: sub.json_on(STATS), 30)  # connected; the source subscribes alongside
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    garbage = [
        b"\xff\xfe\x00",  # not UTF-8
        b"x" * 2_000_000,  # over max_payload_bytes
        b"[" * 60_000,  # nesting deep enough to blow the JSON parser's recursion limit
        b'{"ax": 1e999, "ay": 0, "az": 1}',  # inf
        b'{"ax": Infinity, "ay": 0, "az": 1}',
        b'{"ax": NaN, "ay": 0, "az": 1}',
        b"",
        b"null",
        b'[{"ax": 1}]',
        b'{"ax": 1}',  # columns missing
        b"[1, 2]",  # a row of the wrong length
        b'{"ax": [1], "ay": 0, "az": 1}',
    ]
    good = 0

    def send_good(n: int) -> None:
        nonlocal good
        for i in range(n):
            reading = {"ax": 0.0, "ay": 0.0, "az": 1.0 + 0.01 * (i % 3)}
            pub.publish("sensors/vib", json.dumps(reading), qos=1).wait_for_publish(5)
            good += 1

    def bad_inputs() -> int:
        stats = sub.json_on(STATS)
        return stats[-1]["pipelines"]["vib"]["bad_inputs"] if stats else -1

    # The source subscribes on its own connection: wait until good readings produce results.
    wait_until(lambda: (send_good(8), sub.json_on("edge/test-pi/vib/result"))[1], 30)
    before = len(sub.json_on("edge/test-pi/vib/result"))
    for payload in garbage:
        pub.publish("sensors/vib", payload, qos=1).wait_for_publish(10)
        send_good(2)
    wait_until(lambda: bad_inputs() == len(garbage), 30)
    send_good(40)  # the window refills with good rows: results flow again after the garbage
    wait_until(lambda: len(sub.json_on("edge/test-pi/vib/result")) > before + 5, 30)
    assert daemon.process.poll() is None
    assert sub.json_on("edge/test-pi/vib/result")[-1]["classes"][0]["label"] == "idle"
    assert "skipping bad sensor payload" in daemon.log
    pub.loop_stop()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log


def test_a_deeply_nested_payload_is_bad_input_not_a_crash():
    from edge_runtime.sources.mqtt_source import parse_sensor_payload
    from edge_runtime.sources.windowing import SensorDataError

    with pytest.raises(SensorDataError, match="nested too deeply"):
        parse_sensor_payload(b"[" * 60_000, ("ax",))


def test_silent_network_loss_is_detected_and_nothing_is_lost(tmp_path, durable_broker,
                                                             durable_subscriber, start_daemon):
    """The broker freezes (SIGSTOP): TCP stays open, nothing answers, like a dead network path.

    Only the keepalive can notice; the results meanwhile wait in the outbox.
    """
    sub = durable_subscriber
    config, outbox = streaming_config(tmp_path, durable_broker, keepalive=5)
    daemon = start_daemon(config)
    wait_until(lambda: len(sub.seqs()) >= 10, 30)
    assert durable_broker.process is not None
    durable_broker.process.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: "lost the broker connection" in daemon.log, 30)
    finally:
        durable_broker.process.send_signal(signal.SIGCONT)
    frozen_until = produced(outbox)
    wait_until(lambda: max(sub.seqs(), default=-1) >= frozen_until + 10, 60)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log
    total = produced(outbox)
    wait_until(lambda: len(set(sub.seqs())) >= total, 20)
    duplicates = assert_complete(sub.seqs(), total)
    print(f"{total} results across a frozen broker, {duplicates} duplicate(s)")


def test_qos0_results_bypass_the_outbox_and_are_counted_when_the_broker_is_away(tmp_path,
                                                                                mosquitto,
                                                                                subscribe):
    from edge_runtime.app_config import load_config
    from edge_runtime.publishing.mqtt_publisher import MqttPublisher

    outbox = tmp_path / "outbox.sqlite"
    config = write_config(tmp_path / "c.toml", mosquitto, [digits_pipeline()],
                          mqtt_extra={"qos": 0}, outbox={"path": str(outbox)})
    mosquitto.stop()
    publisher = MqttPublisher(load_config(config))
    publisher.start()
    try:
        assert [publisher.publish_result("digits", {"n": i}) for i in range(5)] == [0, 1, 2, 3, 4]
        assert publisher.qos0_dropped == 5 and publisher.outbox.depth() == 0
        mosquitto.start()
        assert publisher.wait_connected(30)
        sub = subscribe(RESULTS)
        for i in range(5, 10):
            publisher.publish_result("digits", {"n": i})
        wait_until(lambda: len(sub.json_on(RESULTS)) == 5, 20)
        assert [r["seq"] for r in sub.json_on(RESULTS)] == [5, 6, 7, 8, 9]
        assert publisher.stats()["mqtt"]["qos0_dropped"] == 5
    finally:
        publisher.stop(5)
    assert outbox_state(outbox) == (0, {})  # nothing went through the file


def test_a_result_the_broker_keeps_refusing_is_dropped_and_counted_not_retried_forever(
        tmp_path, mosquitto, subscribe, caplog):
    """mosquitto disconnects a client that sends a packet over max_packet_size: without the poison
    rule, that result would be re-sent after every reconnect and block every later one."""
    from edge_runtime.app_config import load_config
    from edge_runtime.publishing.mqtt_publisher import MqttPublisher

    mosquitto.extra_config += "max_packet_size 2000\n"
    mosquitto.restart()
    sub = subscribe(RESULTS)
    config = write_config(tmp_path / "c.toml", mosquitto, [digits_pipeline()],
                          outbox={"path": str(tmp_path / "o.sqlite")})
    publisher = MqttPublisher(load_config(config))
    publisher.start()
    try:
        assert publisher.wait_connected(30)
        for i in range(6):
            publisher.publish_result("digits", {"pad": "x" * (5000 if i == 2 else 10)})
        wait_until(lambda: {r["seq"] for r in sub.json_on(RESULTS)} >= {0, 1, 3, 4, 5}, 60)
        assert publisher.flush(30)
        got = [r["seq"] for r in sub.json_on(RESULTS)]
        assert set(got) == {0, 1, 3, 4, 5}  # re-sent ones may repeat; seq 2 never arrives
        assert list(dict.fromkeys(got)) == [0, 1, 3, 4, 5]  # first arrivals in order
        stats = publisher.stats()
        assert stats["pipelines"]["digits"]["dropped"] == 1 and stats["outbox"]["depth"] == 0
        assert "dropping result digits/2" in caplog.text
    finally:
        publisher.stop(5)


def test_unreadable_and_odd_images_are_counted_in_the_stats_and_the_rest_classified(
        tmp_path, mosquitto, subscribe, start_daemon):
    """Truncated, empty and fake image files are bad inputs; a 1x1 pixel, a 16-bit and an RGBA
    image are merely unusual: they are classified (the preprocessing resizes and converts)."""
    import shutil

    import cv2
    import numpy as np

    from conftest import DIGITS_SAMPLES

    folder = tmp_path / "images"
    folder.mkdir()
    samples = sorted(DIGITS_SAMPLES.glob("*.png"))[:5]
    for sample in samples:
        shutil.copy(sample, folder / sample.name)
    good = samples[0].read_bytes()
    (folder / "bad_truncated.png").write_bytes(good[: len(good) // 3])
    (folder / "bad_empty.png").write_bytes(b"")
    (folder / "bad_text.png").write_text("not an image")
    cv2.imwrite(str(folder / "odd_1x1.png"), np.full((1, 1, 3), 200, np.uint8))
    cv2.imwrite(str(folder / "odd_16bit.png"), np.full((40, 30), 40000, np.uint16))
    cv2.imwrite(str(folder / "odd_rgba.png"), np.full((64, 64, 4), 255, np.uint8))
    sub = subscribe(RESULTS, STATS)
    pipeline = digits_pipeline(path=str(folder))
    config = write_config(tmp_path / "c.toml", mosquitto, [pipeline],
                          outbox={"path": str(tmp_path / "o.sqlite")})
    daemon = start_daemon(config)
    assert daemon.wait(60) == 0, daemon.log
    names = sorted(r["source"]["name"] for r in sub.json_on(RESULTS))
    assert names == sorted([s.name for s in samples] + ["odd_16bit.png", "odd_1x1.png",
                                                          "odd_rgba.png"])
    final = wait_until(lambda: [s for s in sub.json_on(STATS)
                                if s["pipelines"]["digits"]["state"] == "finished"], 20)[-1]
    assert final["pipelines"]["digits"]["bad_inputs"] == 3
    assert final["pipelines"]["digits"]["results"] == 8


def test_a_failing_stats_source_never_stops_the_results(tmp_path, mosquitto, subscribe, caplog):
    from edge_runtime.app_config import load_config
    from edge_runtime.publishing.mqtt_publisher import MqttPublisher
    from edge_runtime.publishing.stats import StatsReporter

    class BrokenRunner:
        """A pipeline whose counters cannot be read (say, a runner refactored under the stats)."""

        name = "digits"
        dropped = 0

        @property
        def stats(self) -> Any:
            raise AttributeError("no stats here")

        def input_errors(self) -> int:
            return 0

    config = write_config(tmp_path / "c.toml", mosquitto, [digits_pipeline()],
                          outbox={"path": str(tmp_path / "o.sqlite")})
    sub = subscribe(RESULTS)
    publisher = MqttPublisher(load_config(config))
    publisher.attach_stats(StatsReporter("test-pi", [BrokenRunner()]))
    publisher.start()
    try:
        for i in range(5):
            publisher.publish_result("digits", {"n": i})
        wait_until(lambda: len(sub.json_on(RESULTS)) == 5, 30)
        assert publisher.flush(10) and publisher.connects == 1
        assert "cannot build the stats message" in caplog.text
    finally:
        publisher.stop(5)


def test_no_usable_outbox_place_still_runs_with_a_memory_outbox(tmp_path, mosquitto, subscribe,
                                                                start_daemon):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the outbox's directory should be")
    sub = subscribe(RESULTS, STATS)
    config = write_config(tmp_path / "c.toml", mosquitto, [digits_pipeline()],
                          outbox={"path": str(blocker / "outbox.sqlite")})
    daemon = start_daemon(config)
    assert daemon.wait(60) == 0, daemon.log
    assert "keeping results in memory only" in daemon.log
    assert [r["seq"] for r in sub.json_on(RESULTS)] == list(range(20))
    final = wait_until(lambda: [s for s in sub.json_on(STATS)
                                if s["pipelines"]["digits"]["results"] == 20], 20)[-1]
    assert final["outbox"]["backend"] == "memory"
