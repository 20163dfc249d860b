"""The daemon against a real Home Assistant Core (../shared/ha): what a user's HA makes of it.

Skipped, with the reason, where ../shared/ha is absent or its environment cannot be built
(deploy/run-tests.sh builds it when ../shared/ha exists: about 3-5 minutes once, then cached).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest

from conftest import (
    DIGITS_INT8,
    DIGITS_SAMPLES,
    REPO,
    VIBRATION_CSV,
    VIBRATION_MODEL,
    Broker,
    edge_runtime,
    wait_until,
)
from ha_scenes import ha_config, moving_square

HARNESS = Path(os.environ.get("EDGE_RUNTIME_HA_HARNESS", REPO.parent / "shared" / "ha"))
ENTITY = "edge_runtime_ha_pi_{pipeline}_{kind}"  # default_entity_id's object id (discovery.py)


class HomeAssistant:
    def __init__(self, url: str, token: str, pid: int, config: str) -> None:
        self.url, self.token, self.pid, self.config = url, token, pid, config

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def state(self, entity_id: str) -> dict[str, Any] | None:
        status, body = self.request("GET", f"/api/states/{entity_id}")
        return json.loads(body) if status == 200 else None

    def state_is(self, entity_id: str, *wanted: str) -> dict[str, Any] | None:
        state = self.state(entity_id)
        return state if state and (not wanted or state["state"] in wanted) else None

    def registry(self, what: str) -> list[dict[str, Any]]:
        """--entities or --devices, through the harness's websocket client."""
        out = subprocess.run([str(HARNESS / "states.py"), self.url, self.token, what],
                             capture_output=True, text=True, timeout=60, check=True)
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def log(self) -> str:
        path = Path(self.config) / "hass.out"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def entity(platform: str, pipeline: str, kind: str) -> str:
    return f"{platform}." + ENTITY.format(pipeline=pipeline, kind=kind)


@pytest.fixture(scope="module")
def home_assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, HomeAssistant]]:
    if not (HARNESS / "start.sh").exists():
        pytest.skip(f"no Home Assistant harness at {HARNESS}")
    build = subprocess.run([str(HARNESS / "setup_venv.sh")], capture_output=True, text=True,
                           timeout=1800)
    if build.returncode != 0:
        pytest.skip("the Home Assistant environment cannot be built here: "
                    + (build.stderr.strip().splitlines() or ["(no output)"])[-1])
    broker = Broker(tmp_path_factory.mktemp("ha-broker"))
    broker.start()
    started = subprocess.run([str(HARNESS / "start.sh"), str(broker.port)], capture_output=True,
                             text=True, timeout=900)
    if started.returncode != 0:
        broker.stop()
        pytest.fail(f"Home Assistant did not start: {started.stderr[-3000:]}")
    env = dict(line.split("=", 1) for line in started.stdout.split()
               if "=" in line and line.split("=", 1)[0].startswith("HA_"))
    env = {k: v.strip("'\"") for k, v in env.items()}
    ha = HomeAssistant(env["HA_URL"], env["HA_TOKEN"], int(env["HA_PID"]), env["HA_CONFIG"])
    yield broker, ha
    subprocess.run([str(HARNESS / "stop.sh"), str(ha.pid), ha.config], timeout=120)
    broker.stop()


def test_entities_states_image_control_unavailable_and_removal(home_assistant, tmp_path,
                                                               start_daemon) -> None:
    broker, ha = home_assistant
    scenes = moving_square(tmp_path / "scenes")
    config = ha_config(tmp_path / "config.toml", broker, scenes, pipelines=("yard", "gate"))
    # a classifier on images and a sensor model whose raw outputs are published
    text = config.read_text().replace("[homeassistant]", f"""
[[pipelines]]
name = "digits"
source = {{ type = "images", path = "{DIGITS_SAMPLES}", loop = true, fps = 5 }}
model = {{ path = "{DIGITS_INT8}", threads = 1 }}
[[pipelines]]
name = "vibration"
source = {{ type = "csv", path = "{VIBRATION_CSV}", loop = true, stride = 32, rate = 160 }}
model = {{ path = "{VIBRATION_MODEL}", threads = 1 }}
postprocess = {{ task = "raw" }}
[[pipelines]]
name = "levels"
source = {{ type = "csv", path = "{VIBRATION_CSV}", loop = true, stride = 32, rate = 160 }}
model = {{ path = "{VIBRATION_MODEL}", threads = 1 }}
postprocess = {{ task = "regression", names = ["idle", "normal", "imbalance"] }}
[homeassistant]""")
    config.write_text(text)
    daemon = start_daemon(config)
    count = entity("sensor", "yard", "count_square")
    try:
        # the square is in every frame: 1 square, no disc
        wait_until(lambda: ha.state_is(count, "1"), 60)
    except AssertionError:
        raise AssertionError(f"{count} never became 1: {ha.state(count)}\n"
                             f"daemon:\n{daemon.log[-3000:]}\nHA:\n{ha.log()}") from None
    assert wait_until(lambda: ha.state_is(entity("binary_sensor", "yard", "present_square"),
                                          "on"), 20)
    assert wait_until(lambda: ha.state_is(entity("binary_sensor", "yard", "present_disc"),
                                          "off"), 20)
    assert wait_until(lambda: ha.state_is(entity("sensor", "yard", "zone_left"), "0", "1"), 20)
    assert wait_until(lambda: ha.state_is(entity("sensor", "yard", "delegate"), "cpu"), 20)
    rate = wait_until(lambda: ha.state_is(entity("sensor", "yard", "results_per_s")), 20)
    wait_until(lambda: float(ha.state(entity("sensor", "yard", "results_per_s"))["state"]) > 0, 20)
    assert rate["attributes"]["unit_of_measurement"] == "results/s"
    digit = wait_until(lambda: ha.state_is(entity("sensor", "digits", "label"),
                                           *[str(d) for d in range(10)]), 20)
    assert 0 <= digit["attributes"]["score"] <= 1 and digit["attributes"]["classes"]
    raw = entity("sensor", "vibration", "outputs")
    wait_until(lambda: (ha.state(raw) or {"state": ""})["state"].startswith("20"), 20)  # its ts
    assert ha.state(raw)["attributes"]["outputs"]
    # a regression task's values: one numeric sensor per name, read from the retained state
    levels = [entity("sensor", "levels", f"value_{name}") for name in ("idle", "normal", "imbalance")]
    wait_until(lambda: all(ha.state_is(e) and ha.state(e)["state"] not in ("unknown", "unavailable")
                           for e in levels), 30)
    values = [float(ha.state(e)["state"]) for e in levels]
    assert all(0 <= v <= 1 for v in values) and abs(sum(values) - 1) < 0.01  # the softmax
    assert ha.state(entity("image", "digits", "snapshot")) is None  # no [pipelines.snapshot]

    # one device, every entity of both pipelines on it, diagnostics flagged as such
    devices = [d for d in ha.registry("--devices") if ["mqtt", "edge_runtime_ha-pi"]
               in d["identifiers"]]
    assert len(devices) == 1 and devices[0]["name"] == "edge-runtime ha-pi"
    ours = [e for e in ha.registry("--entities") if e.get("device_id") == devices[0]["id"]]
    by_id = {e["entity_id"]: e for e in ours}
    assert entity("sensor", "gate", "count_square") in by_id
    assert by_id[entity("sensor", "yard", "inference_ms")]["entity_category"] == "diagnostic"
    assert len({e["unique_id"] for e in ours}) == len(ours)

    # the snapshot, served by Home Assistant
    image = wait_until(lambda: ha.state_is(entity("image", "yard", "snapshot")), 20)
    wait_until(lambda: ha.state(entity("image", "yard", "snapshot"))["state"] not in
               ("unknown", "unavailable"), 20)
    picture = ha.state(entity("image", "yard", "snapshot"))["attributes"]["entity_picture"]
    status, jpeg = ha.request("GET", picture)
    assert status == 200, jpeg[:200]
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape[1] == 200
    assert image

    # the switch pauses the pipeline: Home Assistant publishes the command, the daemon obeys
    switch = entity("switch", "yard", "running")
    assert wait_until(lambda: ha.state_is(switch, "on"), 20)
    status, _ = ha.request("POST", "/api/services/switch/turn_off", {"entity_id": switch})
    assert status == 200
    assert wait_until(lambda: ha.state_is(switch, "off"), 20)
    wait_until(lambda: "pipeline yard: paused by command" in daemon.log, 10)
    status, _ = ha.request("POST", "/api/services/switch/turn_on", {"entity_id": switch})
    assert wait_until(lambda: ha.state_is(switch, "on"), 20)

    # the daemon stops: its status goes offline and every entity is unavailable
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log
    for entity_id in (count, switch, entity("image", "yard", "snapshot"),
                      entity("sensor", "gate", "count_square")):
        assert wait_until(lambda: ha.state_is(entity_id, "unavailable"), 20), entity_id

    # the next start without "gate": its entities go, yard's come back
    config = ha_config(tmp_path / "config.toml", broker, scenes, pipelines=("yard",))
    daemon = start_daemon(config)
    assert wait_until(lambda: ha.state_is(count, "1"), 60)
    gate = entity("sensor", "gate", "count_square")
    wait_until(lambda: ha.state(gate) is None, 20)
    assert ha.state(entity("image", "gate", "snapshot")) is None
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0

    # ha-remove: the device and its entities are gone from Home Assistant
    removed = edge_runtime("ha-remove", "--config", str(config))
    assert removed.returncode == 0, removed.stderr
    wait_until(lambda: ha.state(count) is None and ha.state(switch) is None, 20)
    wait_until(lambda: not [d for d in ha.registry("--devices")
                            if ["mqtt", "edge_runtime_ha-pi"] in d["identifiers"]], 20)


def test_discovery_is_sent_again_when_home_assistant_comes_online(home_assistant, tmp_path,
                                                                   start_daemon) -> None:
    """Home Assistant's birth message (`online` on homeassistant/status) brings discovery back
    even where the retained message was lost (here: cleared behind the daemon's back)."""
    broker, ha = home_assistant
    scenes = moving_square(tmp_path / "scenes")
    config = ha_config(tmp_path / "config.toml", broker, scenes, device="ha-pi")
    daemon = start_daemon(config)
    count = entity("sensor", "yard", "count_square")
    assert wait_until(lambda: ha.state_is(count, "1"), 60)
    removed = edge_runtime("ha-remove", "--config", str(config))  # daemon still running
    assert removed.returncode == 0
    wait_until(lambda: ha.state(count) is None, 20)
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t",
                    "homeassistant/status", "-m", "online"], check=True, timeout=10)
    assert wait_until(lambda: ha.state_is(count, "1", "0"), 30)
    assert "Home Assistant is online; publishing discovery again" in daemon.log
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    assert edge_runtime("ha-remove", "--config", str(config)).returncode == 0
