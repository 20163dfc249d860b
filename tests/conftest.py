"""Shared test fixtures: a real mosquitto per test, a real MQTT subscriber, the daemon as a process."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from ports import free_port, sockets_on

# After deploy/run-tests.sh's set-up, a skip for a tool that set-up installs is a failure.
pytest_plugins = ["strict_skips"]

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
DIGITS_INT8 = EXAMPLES / "digits" / "digits_int8.tflite"
DIGITS_FLOAT = EXAMPLES / "digits" / "digits_float.tflite"
DIGITS_SAMPLES = EXAMPLES / "digits" / "samples"
VIBRATION_MODEL = EXAMPLES / "vibration" / "vibration.tflite"
VIBRATION_CSV = EXAMPLES / "vibration" / "vibration.csv"


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@dataclass
class Broker:
    """A real mosquitto on a free loopback port; tests stop, restart and reconfigure it."""

    workdir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    extra_config: str = ""  # appended: applies to the listener (TLS files, password_file)
    anonymous: bool = True
    process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = mosquitto_binary()
        if binary is None:
            pytest.fail("mosquitto is not installed: run deploy/dev-setup.sh")
        conf = self.workdir / "mosquitto.conf"
        # As root, mosquitto drops to its own user, who cannot read the tests' private files.
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"listener {self.port} {self.host}\n{user}"
            f"allow_anonymous {'true' if self.anonymous else 'false'}\npersistence false\n"
            # A test's Python subscriber may fall far behind a fast pipeline: the default queue of
            # 1000 messages per client would make the broker drop what the daemon delivered.
            f"log_dest stderr\nmax_queued_messages 0\n{self.extra_config}"
        )
        self.process = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "mosquitto.log", "ab"),
        )
        wait_until(self._accepting, 10)

    def _accepting(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.workdir / "mosquitto.log").read_text()
            held = ""
            if log.rstrip().endswith("Address already in use"):  # this start, not an earlier one
                held = f"\nsockets on port {self.port} now: {sockets_on(self.port) or 'none'}"
            raise AssertionError(f"mosquitto exited: {log}{held}")
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def mosquitto_binary() -> str | None:
    """The broker the tests start ($EDGE_RUNTIME_TEST_MOSQUITTO names another one)."""
    given = os.environ.get("EDGE_RUNTIME_TEST_MOSQUITTO")
    if given is not None:
        return given if Path(given).is_file() else None
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists()
                                         else None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A missing broker is one clear error before any test runs, not a failure in each test."""
    needing = [item for item in items if "mosquitto" in getattr(item, "fixturenames", ())]
    if needing and mosquitto_binary() is None:
        raise pytest.UsageError(
            f"mosquitto is not installed, and {len(needing)} selected test(s) need a real broker: "
            "run deploy/dev-setup.sh (or apt-get install mosquitto mosquitto-clients)")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    broker = Broker(broker_dir)
    broker.start()
    yield broker
    broker.stop()


class Subscriber:
    """A real MQTT client that records every message on `topics`."""

    def __init__(self, broker: Broker, topics: list[str], client_id: str = "") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self._topics = topics
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def json_on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.on(topic)]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def subscribe(mosquitto: Broker) -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def factory(*topics: str) -> Subscriber:
        sub = Subscriber(mosquitto, list(topics))
        made.append(sub)
        return sub

    yield factory
    for sub in made:
        sub.close()


class DurableSubscriber:
    """An MQTT v5 session that outlives its connection and the broker's restart."""

    def __init__(self, broker: Broker, topics: list[str], client_id: str = "durable-sub") -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topics = topics
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=mqtt.MQTTv5)
        self._client.reconnect_delay_set(0.1, 0.5)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600  # the broker queues for us while we are away
        self._client.connect(broker.host, broker.port, clean_start=False, properties=props)
        self._client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if not flags.session_present:
            client.subscribe([(t, 1) for t in self._topics])
        else:
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def on(self, topic: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(p) for t, p in self.messages if t == topic]

    def seqs(self, topic: str = "edge/test-pi/digits/result") -> list[int]:
        return [m["seq"] for m in self.on(topic)]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def durable_broker(mosquitto: Broker) -> Broker:
    """The broker saves sessions on SIGTERM, so our subscriber's queue survives its restart."""
    mosquitto.extra_config += (f"persistence true\npersistence_location {mosquitto.workdir}/\n")
    mosquitto.restart()
    return mosquitto


@pytest.fixture
def durable_subscriber(durable_broker: Broker) -> Iterator[DurableSubscriber]:
    """Subscribed to every pipeline's results and the stats, before the test starts anything."""
    sub = DurableSubscriber(durable_broker, ["edge/test-pi/+/result", "edge/test-pi/stats"])
    yield sub
    sub.close()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def write_config(path: Path, broker: Broker | None, pipelines: list[dict[str, Any]],
                 device: str = "test-pi", mqtt_extra: dict[str, Any] | None = None,
                 **tables: dict[str, Any]) -> Path:
    """A config file: pipelines are dicts of sections (source, model, preprocess, postprocess);
    `tables` are top-level tables (outbox={...}, stats={...}, retry={...}, logging={...})."""
    lines = ["[device]", f"id = {toml_value(device)}", "[mqtt]"]
    mqtt_settings = {"host": "127.0.0.1", "port": broker.port if broker else free_port()}
    mqtt_settings.update(mqtt_extra or {})
    mqtt_settings.update(tables.pop("mqtt", {}))
    lines += [f"{k} = {toml_value(v)}" for k, v in mqtt_settings.items()]
    top = {"retry": {"broker": {"min_delay": 0.2, "max_delay": 1.0}}}
    for name, values in tables.items():
        top[name] = {**top.get(name, {}), **values}
    for name, values in top.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    for pipeline in pipelines:
        lines += ["[[pipelines]]", f"name = {toml_value(pipeline['name'])}"]
        for section in ("source", "model", "preprocess", "postprocess", "gate", "publish"):
            if section in pipeline:
                lines.append(f"[pipelines.{section}]")
                lines += [f"{k} = {toml_value(v)}" for k, v in pipeline[section].items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def digits_pipeline(name: str = "digits", model: Path = DIGITS_INT8, **source: Any) -> dict[str, Any]:
    return {"name": name, "source": {"type": "images", "path": str(DIGITS_SAMPLES), **source},
            "model": {"path": str(model), "threads": 1}}


def outbox_state(path: Path) -> tuple[int, dict[str, int]]:
    """(depth, {pipeline: next seq}) read from the daemon's outbox while it runs."""
    if not path.exists():
        return 0, {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        depth = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        seqs = dict(db.execute("SELECT name, next_seq FROM pipelines").fetchall())
    except sqlite3.OperationalError:  # not created yet
        return 0, {}
    finally:
        db.close()
    return depth, seqs


def produced(path: Path, pipeline: str = "digits") -> int:
    return outbox_state(path)[1].get(pipeline, 0)


def daemon_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NOTIFY_SOCKET", None)
    env.pop("STATE_DIRECTORY", None)  # each test daemon keeps its outbox next to its own config
    env.update(extra)
    return env


def edge_runtime(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    """Run the CLI to completion (`python -m edge_runtime ...`)."""
    return subprocess.run([sys.executable, "-m", "edge_runtime", *args], capture_output=True,
                          text=True, timeout=timeout, env=daemon_env(**env), cwd=REPO)


def edge_convert(*args: object) -> tuple[int, str, str]:
    """Run edge-convert in this process; (exit status, stdout, stderr)."""
    from converters.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


class DaemonProcess:
    """`edge-runtime run` as a subprocess, its stderr kept in a file for assertions."""

    def __init__(self, config: Path, log: Path, **env: str) -> None:
        self.log_path = log
        self._log = open(log, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_runtime", "run", "--config", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=daemon_env(**env), cwd=REPO,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon still running after {timeout}s; log:\n{self.log}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def factory(config: Path, **env: str) -> DaemonProcess:
        proc = DaemonProcess(config, tmp_path / f"daemon{len(started)}.log", **env)
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.kill()
