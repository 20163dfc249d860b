"""The notify protocol against a real Unix datagram socket, like systemd's."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_runtime.supervision.heartbeat import Heartbeats
from edge_runtime.supervision.sd_notify import (
    SystemdNotifier,
    WatchdogSettings,
    WatchdogThread,
    watchdog_period,
)


def _receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = _receiver(path)
    yield path, sock
    sock.close()


def _fields(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_status_watchdog_stopping_reach_the_socket(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("2 pipelines")
    assert _fields(sock) == ["READY=1", "STATUS=2 pipelines"]
    assert notifier.watchdog()
    assert _fields(sock) == ["WATCHDOG=1"]
    assert notifier.status("line one\nline two")  # a newline must not forge a second field
    assert _fields(sock) == ["STATUS=line one line two"]
    assert notifier.stopping()
    assert _fields(sock) == ["STOPPING=1", "STATUS=stopping"]
    notifier.close()


def test_abstract_socket_address() -> None:
    name = f"edge-runtime-test-{uuid.uuid4().hex}"
    sock = _receiver(b"\0" + name.encode())
    try:
        notifier = SystemdNotifier(f"@{name}")
        assert notifier.ready()
        assert _fields(sock) == ["READY=1"]
        notifier.close()
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = SystemdNotifier.from_env({})
    assert not notifier.enabled
    assert not notifier.ready()


def test_vanished_supervisor_is_logged_once_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SystemdNotifier(str(tmp_path / "nobody-listens.sock"))
    with caplog.at_level(logging.WARNING):
        assert not notifier.ready()
        assert not notifier.watchdog()
    assert len([r for r in caplog.records if "cannot notify systemd" in r.message]) == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "20000000"}, 20.0),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}, 3.0),
        # Inherited from a parent that systemd watches: not ours to ping.
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
    ],
)
def test_watchdog_period(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_period(env) == expected


def test_settings_ping_at_half_the_period() -> None:
    settings = WatchdogSettings.from_env({"WATCHDOG_USEC": "20000000"})
    assert settings == WatchdogSettings(interval=10.0, max_age=20.0, enabled=True)
    assert not WatchdogSettings.from_env({}).enabled


def test_pings_only_while_every_heartbeat_is_fresh(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    beats = Heartbeats()
    main, worker = beats.register("main"), beats.register("pipeline:digits")
    thread = WatchdogThread(
        SystemdNotifier(path), beats, WatchdogSettings(1.0, max_age=5.0, enabled=True), lambda: "ok"
    )
    thread.check_once()
    assert _fields(sock) == ["WATCHDOG=1", "STATUS=ok"]

    worker.last = time.monotonic() - 60  # as if it hung inside invoke() a minute ago
    main.beat()
    thread.check_once()
    assert _fields(sock) == ["STATUS=stuck: pipeline:digits"]
    assert thread.stalled == ["pipeline:digits"]

    worker.beat()  # it recovered before systemd pulled the plug
    thread.check_once()
    assert _fields(sock) == ["WATCHDOG=1", "STATUS=ok"]
    assert thread.stalled == []


def test_status_callback_failure_does_not_stop_pings(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket

    def broken() -> str:
        raise KeyError("bug")

    settings = WatchdogSettings(1.0, 5.0, True)
    thread = WatchdogThread(SystemdNotifier(path), Heartbeats(), settings, broken)
    thread.check_once()
    assert _fields(sock) == ["WATCHDOG=1", "STATUS=running"]


def test_without_watchdog_only_status_is_sent(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    settings = WatchdogSettings(1.0, 5.0, False)
    thread = WatchdogThread(SystemdNotifier(path), Heartbeats(), settings, lambda: "ok")
    thread.check_once()
    assert _fields(sock) == ["STATUS=ok"]


def test_thread_is_named_pings_at_start_and_stops(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    # A long interval: the only ping is the immediate one, so nothing here depends on timing.
    settings = WatchdogSettings(3600, 7200, True)
    thread = WatchdogThread(SystemdNotifier(path), Heartbeats(), settings, lambda: "ok")
    thread.start()
    assert _fields(sock) == ["WATCHDOG=1", "STATUS=ok"]
    assert thread.name == "systemd-watchdog"
    thread.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
