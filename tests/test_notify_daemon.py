"""The daemon speaks the systemd notify protocol: a real socket, a real broker, the real daemon.

Like systemd, the test binds a Unix datagram socket, passes it in $NOTIFY_SOCKET (abstract, '@...')
with $WATCHDOG_USEC, and reads what the daemon sends. WATCHDOG_USEC is 3 s: pings every 1.5 s,
and a thread without a heartbeat for 3 s counts as stuck.
"""

from __future__ import annotations

import re
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from conftest import digits_pipeline, wait_until, write_config

WATCHDOG_USEC = 3_000_000
PING_INTERVAL = WATCHDOG_USEC / 2 / 1e6


class NotifyListener:
    """What systemd's end of $NOTIFY_SOCKET sees: one message (list of fields) per datagram."""

    def __init__(self) -> None:
        self.name = f"@edge-runtime-test-{uuid.uuid4().hex}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(b"\0" + self.name[1:].encode())
        self.messages: list[list[str]] = []
        self.context: Callable[[], str] = lambda: ""  # e.g. the daemon's log, shown on failure

    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.name, "WATCHDOG_USEC": str(WATCHDOG_USEC)}

    def receive_until(self, predicate: Callable[[list[str]], bool], timeout: float) -> list[str]:
        """Read messages until one satisfies `predicate`; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no such notify message within {timeout}s; got {self.messages}\n"
                                     f"{self.context()}")
            self._sock.settimeout(remaining)
            try:
                fields = self._sock.recv(4096).decode().split("\n")
            except TimeoutError:
                continue
            self.messages.append(fields)
            if predicate(fields):
                return fields

    def collect(self, seconds: float) -> list[list[str]]:
        """Every message that arrives in the next `seconds`."""
        start = len(self.messages)
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self._sock.settimeout(remaining)
            try:
                self.messages.append(self._sock.recv(4096).decode().split("\n"))
            except TimeoutError:
                break
        return self.messages[start:]

    def close(self) -> None:
        self._sock.close()


def ping(fields: list[str]) -> bool:
    return "WATCHDOG=1" in fields


def status(fields: list[str]) -> str:
    return next((f[len("STATUS="):] for f in fields if f.startswith("STATUS=")), "")


@pytest.fixture
def listener() -> Iterator[NotifyListener]:
    lis = NotifyListener()
    yield lis
    lis.close()


def _looping_digits(tmp_path, mosquitto, **tables):
    pipeline = digits_pipeline(loop=True, fps=10)
    return write_config(tmp_path / "config.toml", mosquitto, [pipeline], **tables)


def test_ready_periodic_watchdog_and_stopping(tmp_path, mosquitto, subscribe, start_daemon, listener):
    """READY does not wait for the broker, and each STATUS= is the state when it was sent.

    The broker is frozen (SIGSTOP) until READY and a ping have come: the daemon's CONNECT waits
    unanswered, as it does when a loaded machine starves the broker or the network thread. Those
    messages say "broker unreachable"; they sit in the socket until read, so a test that took the
    first ping after the first result as "now" read a stale one (the flake this replaced).
    """
    sub = subscribe("edge/test-pi/digits/result")
    mosquitto.process.send_signal(signal.SIGSTOP)
    try:
        daemon = start_daemon(_looping_digits(tmp_path, mosquitto), **listener.env())
        listener.context = lambda: daemon.log
        ready = listener.receive_until(lambda f: "READY=1" in f, 60)
        assert status(ready).startswith("broker unreachable")  # the one-line summary comes too
        listener.receive_until(lambda f: ping(f) and "results to deliver" in status(f), 30)
    finally:
        mosquitto.process.send_signal(signal.SIGCONT)
    wait_until(lambda: sub.on("edge/test-pi/digits/result"), 30)  # models loaded before READY
    # Pings sent before the CONNACK are still queued: read up to the first one sent after it.
    listener.receive_until(lambda f: ping(f) and status(f).startswith("connected"), 10 * PING_INTERVAL)
    for _ in range(3):  # periodic, not a one-off; the connection stays up
        fields = listener.receive_until(ping, 10 * PING_INTERVAL)
        assert "digits" in status(fields) and status(fields).startswith("connected"), \
            (fields, daemon.log)
    daemon.signal(signal.SIGTERM)
    listener.receive_until(lambda f: "STOPPING=1" in f, 30)
    assert daemon.wait(30) == 0, daemon.log


def test_watchdog_stops_when_an_inference_worker_hangs(tmp_path, mosquitto, subscribe, start_daemon,
                                                        listener):
    sub = subscribe("edge/test-pi/digits/result")
    daemon = start_daemon(_looping_digits(tmp_path, mosquitto), **listener.env(),
                          EDGE_RUNTIME_TEST_STALL_INFERENCE="digits")
    listener.context = lambda: daemon.log
    listener.receive_until(lambda f: "READY=1" in f, 60)
    wait_until(lambda: sub.on("edge/test-pi/digits/result"), 30)  # one result, then it hangs
    stuck = listener.receive_until(lambda f: status(f).startswith("stuck"), 30)
    assert status(stuck) == "stuck: inference-digits"  # only the hung thread is named
    # The hang is permanent: from here on systemd must hear no ping (it would restart us).
    later = listener.collect(4 * PING_INTERVAL)
    assert later and not any(ping(f) for f in later), later
    assert all(status(f) == "stuck: inference-digits" for f in later), later
    assert "withholding watchdog pings" in daemon.log


def test_watchdog_keeps_pinging_while_the_broker_is_down(tmp_path, mosquitto, start_daemon, listener):
    daemon = start_daemon(_looping_digits(tmp_path, mosquitto), **listener.env())
    listener.context = lambda: daemon.log
    listener.receive_until(lambda f: "READY=1" in f, 60)
    listener.receive_until(lambda f: ping(f) and "connected" in status(f), 30)
    mosquitto.stop()
    listener.receive_until(lambda f: ping(f) and "broker unreachable" in status(f), 30)
    later = listener.collect(4 * PING_INTERVAL)  # several reconnect attempts fail meanwhile
    assert sum(ping(f) for f in later) >= 2, later  # degraded, not hung: pings go on
    assert not any(status(f).startswith("stuck") for f in later), later
    mosquitto.start()  # back again: reconnects, still pinging
    listener.receive_until(lambda f: ping(f) and status(f).startswith("connected"), 30)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log


def test_watchdog_keeps_pinging_through_long_reconnect_backoff(tmp_path, mosquitto, start_daemon,
                                                                listener):
    """A reconnect backoff longer than the watchdog period is a deliberate wait, not a hang."""
    config = _looping_digits(tmp_path, mosquitto,
                             retry={"broker": {"min_delay": 8.0, "max_delay": 8.0}})
    daemon = start_daemon(config, **listener.env())
    listener.context = lambda: daemon.log
    listener.receive_until(lambda f: ping(f) and "connected" in status(f), 60)
    mosquitto.stop()
    listener.receive_until(lambda f: "broker unreachable" in status(f), 30)
    later = listener.collect(10.0)  # spans a whole 8 s backoff pause
    assert sum(ping(f) for f in later) >= 4, later
    assert not any(status(f).startswith("stuck") for f in later), later
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log


def test_watchdog_keeps_pinging_while_the_camera_is_gone(tmp_path, mosquitto, start_daemon, listener):
    camera = digits_pipeline(name="porch")
    camera["source"] = {"type": "camera", "device": str(tmp_path / "video-gone")}
    daemon = start_daemon(write_config(tmp_path / "c.toml", mosquitto, [camera]), **listener.env())
    listener.context = lambda: daemon.log
    listener.receive_until(lambda f: "READY=1" in f, 60)

    def long_retry() -> float:
        # A backoff pause well past the 3 s heartbeat age limit (the backoff grows to 30 s).
        delays = [float(d) for d in re.findall(r"source failed.*retrying in (\d+\.\d)s", daemon.log)]
        return next((d for d in delays if d >= 5.0), 0.0)

    delay = wait_until(long_retry, 120)
    later = listener.collect(delay)
    assert sum(ping(f) for f in later) >= 2, later
    assert not any(status(f).startswith("stuck") for f in later), later
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log


def test_without_notify_socket_the_daemon_runs_as_before(tmp_path, mosquitto, subscribe, start_daemon):
    sub = subscribe("edge/test-pi/digits/result")
    daemon = start_daemon(write_config(tmp_path / "c.toml", mosquitto, [digits_pipeline()]))
    assert daemon.wait(60) == 0, daemon.log
    assert len(sub.on("edge/test-pi/digits/result")) == 20
