"""Thread names reach the kernel, so `top -H` and /proc show which stage uses the CPU."""

from __future__ import annotations

import threading
from pathlib import Path

from conftest import VIBRATION_CSV, VIBRATION_MODEL, wait_until, write_config
from edge_runtime.app_config import load_config
from edge_runtime.daemon import prepare
from edge_runtime.pipeline.runner import PipelineRunner
from edge_runtime.publishing.mqtt_publisher import MqttPublisher
from edge_runtime.supervision.heartbeat import Heartbeats
from edge_runtime.supervision.threads import NamedThread


def kernel_names() -> set[str]:
    names = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            names.add((task / "comm").read_text().strip())
        except OSError:
            pass  # the thread ended meanwhile
    return names


def test_a_named_thread_carries_its_name_to_the_kernel_truncated_to_15_bytes():
    seen: list[str] = []
    release = threading.Event()

    def look() -> None:
        seen.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())
        release.wait(5)

    thread = NamedThread(target=look, name="inference-vibration-sensor")
    thread.start()
    release.set()
    thread.join(5)
    assert seen == ["inference-vibra"]
    assert thread.name == "inference-vibration-sensor"  # Python keeps the whole name


def test_the_daemon_threads_are_named_for_the_kernel(tmp_path, mosquitto):
    config = write_config(tmp_path / "c.toml", mosquitto, [{
        "name": "vib", "source": {"type": "csv", "path": str(VIBRATION_CSV), "loop": True},
        "model": {"path": str(VIBRATION_MODEL)}}])
    app = load_config(config)
    heartbeats = Heartbeats()
    publisher = MqttPublisher(app, heartbeats)
    runner = PipelineRunner(prepare(app)[0], lambda: prepare(app)[0], publisher, app.device.id,
                            heartbeats)
    publisher.start()
    runner.start()
    try:
        wait_until(lambda: {"source-vib", "inference-vib", "mqtt-network"} <= kernel_names(), 10)
    finally:
        runner.stop()
        runner.join(10)
        publisher.stop(10)
