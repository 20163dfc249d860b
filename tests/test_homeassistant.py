"""Discovery, states, snapshots, events and control: the pure parts, then the daemon against a
real mosquitto (what Home Assistant itself makes of it: test_homeassistant_real.py)."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from conftest import REPO, edge_runtime, wait_until
from edge_runtime.homeassistant.discovery import (
    HaTopics,
    PipelineInfo,
    discovery_payload,
    object_id,
    slug,
    with_removals,
)
from edge_runtime.homeassistant.snapshot import SnapshotPolicy, render
from edge_runtime.homeassistant.states import StateThrottle
from edge_runtime.messages.topics import Topics
from edge_runtime.payload_schemas import result_schema, state_schema
from edge_runtime.postprocessing.registry import TASKS
from edge_runtime.postprocessing.task import EntityContext
from ha_scenes import ha_config, moving_square

SCHEMAS = REPO / "edge_runtime" / "schemas"


def entity_state(task: str, ts: str, fields: dict, labels: tuple, zones: tuple) -> tuple:
    """The entity state the task plugin makes for a result."""
    return TASKS[task].entity_state(ts, fields, EntityContext(labels, zones))
VALID_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
VALID_ENTITY_ID = re.compile(r"^[a-z_]+\.[a-z0-9_]+$")


def topics() -> HaTopics:
    return HaTopics(Topics("edge", "kitchen.pi"), "homeassistant")


def test_discovery_ids_are_stable_valid_and_distinct() -> None:
    infos = [PipelineInfo("door", "detection", ("person", "traffic light", "traffic_light"),
                          ("porch",), snapshot=True),
             PipelineInfo("digits", "classification"), PipelineInfo("vib", "raw")]
    payload = discovery_payload("kitchen.pi", topics(), infos, control=True)
    again = discovery_payload("kitchen.pi", topics(), infos, control=True)
    assert payload == again
    assert VALID_ID.match(object_id("kitchen.pi"))
    cmps = payload["cmps"]
    uniques = [c["unique_id"] for c in cmps.values()]
    assert len(set(uniques)) == len(uniques)
    for key, component in cmps.items():
        assert VALID_ID.match(key) and VALID_ID.match(component["unique_id"]), key
        assert VALID_ENTITY_ID.match(component["default_entity_id"]), component
    platforms = sorted(c["p"] for k, c in cmps.items() if k.startswith("door_"))
    # 3 labels x (count + presence), 1 zone, snapshot, switch, 5 diagnostics
    assert platforms.count("binary_sensor") == 3 and platforms.count("image") == 1
    assert platforms.count("switch") == 1 and platforms.count("sensor") == 3 + 1 + 5
    assert cmps["digits_label"]["state_topic"] == "edge/kitchen.pi/digits/state"
    assert cmps["door_running"]["command_topic"] == "edge/kitchen.pi/door/control/set"
    assert not any(key.endswith("source_reconnects") for key in cmps)  # no live source here
    live = discovery_payload("kitchen.pi", topics(), [PipelineInfo("porch", "raw", live=True)],
                             control=False)["cmps"]["porch_source_reconnects"]
    assert live["value_template"] == "{{ value_json.pipelines['porch'].source_reconnects }}"
    assert live["state_topic"] == "edge/kitchen.pi/stats" and live["entity_category"] == "diagnostic"
    assert payload["avty_t"] == "edge/kitchen.pi/status"
    assert slug("traffic light") != slug("traffic_light") and slug("person") == "person"


def test_discovery_without_control_has_no_command_topic() -> None:
    payload = discovery_payload("pi", topics(), [PipelineInfo("door", "detection", ("a",))],
                                control=False)
    assert not any("command_topic" in c for c in payload["cmps"].values())


def test_removed_pipelines_and_labels_are_removed_from_home_assistant() -> None:
    before = discovery_payload("pi", topics(), [PipelineInfo("door", "detection", ("a", "b")),
                                                PipelineInfo("old", "raw")], control=False)
    after = discovery_payload("pi", topics(), [PipelineInfo("door", "detection", ("a",))],
                              control=False)
    merged = with_removals(after, before)
    removed = {k: v for k, v in merged["cmps"].items() if k not in after["cmps"]}
    assert removed and all(v == {"p": before["cmps"][k]["p"]} for k, v in removed.items())
    assert "old_outputs" in removed and "door_count_b" in removed
    # the next start sees the stubs in the retained message and does not repeat them
    assert with_removals(after, merged) == after


def test_state_schema_tells_the_tasks_apart() -> None:
    schema = state_schema()
    for task, fields in [("classification", {"classes": []}), ("detection", {"detections": []}),
                         ("raw", {"outputs": {"y": {"shape": [1], "data": [0.5]}}})]:
        jsonschema.validate(entity_state(task, "t", fields, ("a",), ("z",))[1], schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"ts": "t", "counts": {"a": -1}, "total": 0, "zones": {},
                             "zone_labels": {}}, schema)


def test_entity_states() -> None:
    key, state = entity_state("detection", "t", {"detections": [
        {"label": "person", "zones": ["porch"]}, {"label": "person", "zones": []},
        {"label": "cat", "zones": ["porch"]}]}, ("person", "dog"), ("porch", "yard"))
    assert state["counts"] == {"person": 2, "dog": 0, "cat": 1} and state["total"] == 3
    assert state["zones"] == {"porch": 2, "yard": 0}
    assert state["zone_labels"] == {"porch": {"person": 1, "cat": 1}, "yard": {}}
    key2, _ = entity_state("detection", "t2", {"detections": [
        {"label": "person", "zones": ["porch"]}, {"label": "person", "zones": []},
        {"label": "cat", "zones": ["porch"]}]}, ("person", "dog"), ("porch", "yard"))
    assert key == key2
    key, state = entity_state("classification", "t", {"classes": [
        {"index": 3, "label": "three", "score": 0.9}]}, (), ())
    assert key == "three" and state["label"] == "three" and state["score"] == 0.9
    assert entity_state("classification", "t", {"classes": []}, (), ())[1]["label"] is None


def test_state_throttle_sends_changes_at_once_and_the_rest_once_a_second() -> None:
    now = [0.0]
    throttle = StateThrottle(clock=lambda: now[0])
    assert throttle.due("a")
    now[0] = 0.2
    assert not throttle.due("a")
    assert throttle.due("b")
    now[0] = 1.3
    assert throttle.due("b")


def test_snapshot_policy_on_label_change_or_new_object_within_the_rate() -> None:
    now = [100.0]
    policy = SnapshotPolicy(min_interval=5.0, clock=lambda: now[0])
    person = frozenset({"person"})
    assert policy.should_take(person, appeared=False)  # first labels
    assert not policy.should_take(person, appeared=False)  # nothing new
    now[0] = 101.0
    assert not policy.should_take(person, appeared=True)  # new object, inside the interval
    now[0] = 105.5
    assert policy.should_take(person, appeared=False)  # ... kept and taken after it
    now[0] = 120.0
    assert not policy.should_take(person, appeared=False)
    assert policy.should_take(frozenset(), appeared=False)  # everyone left: labels changed


def test_render_scales_draws_and_encodes() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    fields = {"detections": [{"label": "person", "score": 0.91, "id": 4,
                              "box": {"xmin": 0.25, "ymin": 0.25, "xmax": 0.5, "ymax": 0.75}}]}
    jpeg = render(image, fields, max_width=320, quality=80)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (240, 320, 3)
    assert decoded[120, 80].max() > 100  # the box's left edge is drawn (the frame was black)
    assert image.max() == 0  # the source's frame is never drawn on
    small = render(np.zeros((60, 80, 3), np.uint8), {}, max_width=320, quality=80)
    assert cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_COLOR).shape == (60, 80, 3)


class Recorder:
    """A real MQTT client recording every message (retained flag included) on some topics."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, bytes(m.payload), bool(m.retain)))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(t, 1) for t in topics])
        self.client.loop_start()
        time.sleep(0.2)

    def on(self, topic: str) -> list[bytes]:
        return [p for t, p, _ in list(self.messages) if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, topic: str, timeout: float = 2.0) -> bytes | None:
    """The broker's retained message on `topic` (None: there is none)."""
    rec = Recorder(port, [topic])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            got = [p for t, p, r in rec.messages if t == topic and r]
            if got:
                return got[-1]
            time.sleep(0.05)
        return None
    finally:
        rec.close()


def test_daemon_publishes_discovery_states_snapshots_events_and_obeys_control(
        tmp_path: Path, mosquitto, start_daemon) -> None:
    scenes = moving_square(tmp_path / "scenes")
    config = ha_config(tmp_path / "config.toml", mosquitto, scenes)
    base = "edge/ha-pi/yard"
    rec = Recorder(mosquitto.port, ["homeassistant/#", f"{base}/#", "edge/ha-pi/stats"])
    daemon = start_daemon(config)
    discovery_topic = "homeassistant/device/edge_runtime_ha-pi/config"
    wait_until(lambda: rec.on(discovery_topic), 30)
    payload = json.loads(rec.on(discovery_topic)[-1])
    assert "yard_count_square" in payload["cmps"] and "yard_zone_left" in payload["cmps"]
    # events: new, then (the loop restarts the square on the left) end of the old one
    wait_until(lambda: any(json.loads(p)["type"] == "end" for p in rec.on(f"{base}/events")), 30)
    events = [json.loads(p) for p in rec.on(f"{base}/events")]
    event_schema = json.loads((SCHEMAS / "event.schema.json").read_text())
    for event in events:
        jsonschema.validate(event, event_schema)
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "new" and events[0]["label"] == "square"
    assert events[0]["zones"] == ["left"] and "left" in events[0]["entered_zones"]
    first_end = next(e for e in events if e["type"] == "end")
    assert first_end["id"] == events[0]["id"] and first_end["best_score"] > 0.9
    results = [json.loads(p) for p in rec.on(f"{base}/result")]
    jsonschema.validate(results[0], result_schema())
    assert results[0]["detections"][0]["id"] == events[0]["id"]
    # the state and the snapshot are retained latest values
    state = json.loads(retained(mosquitto.port, f"{base}/state"))
    jsonschema.validate(state, state_schema())
    assert state["counts"]["square"] == 1 and state["counts"]["disc"] == 0
    jpeg = retained(mosquitto.port, f"{base}/snapshot")
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[1] == 200  # max_width (the frames are 320 wide)
    assert retained(mosquitto.port, f"{base}/control") == b"ON"

    # pause through the command topic: frames are read and not inferred
    controller = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    controller.connect("127.0.0.1", mosquitto.port)
    controller.loop_start()
    controller.publish(f"{base}/control/set", b"OFF", qos=1).wait_for_publish(5)
    wait_until(lambda: retained(mosquitto.port, f"{base}/control", 0.5) == b"OFF", 10)

    def paused_stats():
        stats = [json.loads(p) for p in rec.on("edge/ha-pi/stats")]
        return stats and stats[-1]["pipelines"]["yard"]["paused"] >= 3 \
            and stats[-1]["pipelines"]["yard"]["state"] == "paused"
    wait_until(paused_stats, 15)
    count = len(rec.on(f"{base}/result"))
    time.sleep(1.0)
    assert len(rec.on(f"{base}/result")) == count  # nothing inferred while paused
    controller.publish(f"{base}/control/set", b"bogus", qos=1).wait_for_publish(5)
    controller.publish(f"{base}/control/set", b"ON", qos=1).wait_for_publish(5)
    wait_until(lambda: len(rec.on(f"{base}/result")) > count + 2, 15)
    controller.disconnect()
    controller.loop_stop()

    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log
    assert "ignoring command b'BOGUS'" in daemon.log
    assert retained(mosquitto.port, "edge/ha-pi/status") == b"offline"
    # the pipeline stopped: its objects ended
    last = json.loads(rec.on(f"{base}/events")[-1])
    assert last["type"] == "end"

    removed = edge_runtime("ha-remove", "--config", str(config))
    assert removed.returncode == 0, removed.stderr
    assert retained(mosquitto.port, discovery_topic) is None
    assert retained(mosquitto.port, f"{base}/snapshot") is None
    assert retained(mosquitto.port, f"{base}/state") is None
    rec.close()


def test_a_pipeline_taken_out_of_the_config_is_removed_at_the_next_start(
        tmp_path: Path, mosquitto, start_daemon) -> None:
    scenes = moving_square(tmp_path / "scenes", frames=3)
    discovery_topic = "homeassistant/device/edge_runtime_ha-pi/config"
    config = ha_config(tmp_path / "config.toml", mosquitto, scenes, loop=False,
                       pipelines=("yard", "gate"))
    assert start_daemon(config).wait(60) == 0
    first = json.loads(retained(mosquitto.port, discovery_topic))
    assert "gate_count_square" in first["cmps"]
    config = ha_config(tmp_path / "config.toml", mosquitto, scenes, loop=False)
    daemon = start_daemon(config)
    assert daemon.wait(60) == 0
    second = json.loads(retained(mosquitto.port, discovery_topic))
    assert second["cmps"]["gate_count_square"] == {"p": "sensor"}
    assert second["cmps"]["yard_count_square"]["unique_id"] == \
        first["cmps"]["yard_count_square"]["unique_id"]
    assert "removing entities no longer configured: gate_" in daemon.log


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    scenes = moving_square(tmp_path / "scenes", frames=1)
    config = ha_config(tmp_path / "bad.toml", None, scenes,
                       extra={"snapshot": {"quality": 101}})
    out = edge_runtime("check", "--config", str(config))
    assert out.returncode == 2
    assert "pipelines[0].snapshot.quality: must be between 1 and 100" in out.stderr
    config = ha_config(tmp_path / "bad2.toml", None, scenes, homeassistant={"prefix": "a//b"})
    out = edge_runtime("check", "--config", str(config))
    assert out.returncode == 2 and "homeassistant.prefix" in out.stderr
    # a tracker on a classifier
    text = (tmp_path / "bad.toml").read_text().replace("quality = 101", "quality = 50")
    text = text.replace(str(REPO / "tests" / "models" / "det_shapes.tflite"),
                        str(REPO / "examples" / "digits" / "digits_int8.tflite"))
    (tmp_path / "bad3.toml").write_text(text)
    out = edge_runtime("check", "--config", str(tmp_path / "bad3.toml"))
    assert out.returncode == 2
    assert "pipelines[0].tracker: tracking needs detections; task 'classification'" in out.stderr


def test_ha_remove_reports_an_unreachable_broker(tmp_path: Path) -> None:
    scenes = moving_square(tmp_path / "scenes", frames=1)
    config = ha_config(tmp_path / "config.toml", None, scenes)
    out = edge_runtime("ha-remove", "--config", str(config), timeout=30)
    assert out.returncode == 1 and "cannot reach broker" in out.stderr


def test_unreadable_retained_discovery_and_a_broker_restart(tmp_path: Path, mosquitto,
                                                            start_daemon) -> None:
    """A damaged retained discovery message is ignored (logged) and replaced; after the broker
    restarts without persistence, discovery, states and control come back retained."""
    scenes = moving_square(tmp_path / "scenes")
    discovery_topic = "homeassistant/device/edge_runtime_ha-pi/config"
    base = "edge/ha-pi/yard"
    garbage = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    garbage.connect("127.0.0.1", mosquitto.port)
    garbage.loop_start()
    garbage.publish(discovery_topic, b"{not json", qos=1, retain=True).wait_for_publish(5)
    garbage.disconnect()
    garbage.loop_stop()
    config = ha_config(tmp_path / "config.toml", mosquitto, scenes)
    daemon = start_daemon(config)
    wait_until(lambda: (retained(mosquitto.port, discovery_topic, 0.5) or b"").startswith(b'{"dev"'),
               30)
    assert "ignoring an unreadable retained discovery message" in daemon.log
    mosquitto.restart()  # persistence false: every retained message is gone
    wait_until(lambda: retained(mosquitto.port, discovery_topic, 0.5) is not None, 30)
    assert retained(mosquitto.port, f"{base}/control") == b"ON"
    assert json.loads(retained(mosquitto.port, f"{base}/state"))["counts"]["square"] == 1
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0


class BrokenListener:
    """A LinkListener whose every call fails, and one message it sees."""

    def __init__(self) -> None:
        self.connects = 0

    def on_connect(self, link) -> None:
        self.connects += 1
        link.subscribe(["test/in"], done=self._boom)
        raise RuntimeError("on_connect bug")

    def _boom(self) -> None:
        raise RuntimeError("suback bug")

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        raise RuntimeError("on_message bug")


def test_a_failing_listener_never_stops_results_or_latest_values(tmp_path: Path, mosquitto,
                                                                 subscribe, caplog) -> None:
    from conftest import digits_pipeline, write_config
    from edge_runtime.app_config import load_config
    from edge_runtime.publishing.mqtt_publisher import MqttPublisher

    config = write_config(tmp_path / "c.toml", mosquitto, [digits_pipeline()],
                          outbox={"path": str(tmp_path / "outbox.sqlite")})
    sub = subscribe("edge/test-pi/digits/result", "edge/test-pi/digits/state")
    publisher = MqttPublisher(load_config(config))
    listener = BrokenListener()
    publisher.add_listener(listener)
    publisher.start()
    try:
        assert publisher.wait_connected(20)
        wait_until(lambda: "suback bug" in caplog.text, 10)
        poke = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        poke.connect(mosquitto.host, mosquitto.port)
        poke.loop_start()
        poke.publish("test/in", b"x", qos=1).wait_for_publish(5)
        poke.disconnect()
        poke.loop_stop()
        wait_until(lambda: "on_message bug" in caplog.text, 10)
        for i in range(3):
            publisher.publish_result("digits", {"n": i})
        publisher.publish_latest("edge/test-pi/digits/state", b"old")
        publisher.publish_latest("edge/test-pi/digits/state", b"new")
        wait_until(lambda: len(sub.on("edge/test-pi/digits/result")) == 3, 10)
        wait_until(lambda: sub.on("edge/test-pi/digits/state"), 10)
        assert sub.on("edge/test-pi/digits/state")[-1] == b"new"
        assert "on_connect bug" in caplog.text and listener.connects == 1
        assert publisher.stats()["mqtt"]["disconnects"] == 0
    finally:
        publisher.stop(5)


def test_snapshot_worker_survives_a_frame_it_cannot_encode(caplog) -> None:
    from edge_runtime.homeassistant.snapshot import SnapshotRequest, SnapshotWorker

    got: list[tuple[str, bytes]] = []
    worker = SnapshotWorker(lambda name, jpeg: got.append((name, jpeg)))
    worker.start()
    try:
        worker.submit(SnapshotRequest("bad", np.zeros((0, 0, 3), np.uint8), {}, 640, 80))
        worker.submit(SnapshotRequest("good", np.zeros((48, 64, 3), np.uint8), {}, 640, 80))
        wait_until(lambda: got, 10)
    finally:
        worker.stop()
    assert [name for name, _ in got] == ["good"] and got[0][1][:2] == b"\xff\xd8"
    assert "pipeline bad: snapshot failed" in caplog.text and worker.encoded == 1


def test_events_that_cannot_be_stored_are_logged_and_tracking_goes_on(caplog) -> None:
    from edge_runtime.pipeline.observer import ResultObserver
    from edge_runtime.sources.base import Frame
    from edge_runtime.tracking.objects import ObjectTracker
    from edge_runtime.tracking.tracker import Tracker

    stored: list[dict] = []
    calls = []

    def events(pipeline: str, bodies) -> None:
        calls.append(pipeline)
        if len(calls) == 1:
            raise OSError("disk full")
        stored.extend(bodies)

    observer = ResultObserver("door", TASKS["detection"], EntityContext(("person",)), events,
                              objects=ObjectTracker("pi", "door", Tracker(min_hits=1)))
    frame = Frame(np.zeros((10, 10, 3), np.uint8), 0, captured=1.0)
    box = {"xmin": 0.1, "ymin": 0.1, "xmax": 0.5, "ymax": 0.5}
    observer.observe(frame, {"detections": [{"label": "person", "score": 0.9, "box": dict(box)}]})
    assert "events could not be stored: OSError('disk full')" in caplog.text
    observer.observe(frame, {"detections": [{"label": "cat", "score": 0.9, "box": dict(box)},
                                            {"label": "person", "score": 0.9,
                                             "box": {"xmin": 0.6, "ymin": 0.6, "xmax": 0.9,
                                                     "ymax": 0.9}}]})
    observer.close()
    assert [e["type"] for e in stored] == ["new", "end", "end"] and observer.stats.events == 3
