"""The systemd notify protocol, spoken directly (no libsystemd, no new dependency).

A service with `Type=notify` tells systemd it is up by sending `READY=1` as one datagram to the
Unix socket named in $NOTIFY_SOCKET (a path, or an abstract socket when it starts with '@').
With `WatchdogSec=` systemd also sets $WATCHDOG_USEC (and $WATCHDOG_PID) and kills the service
unless it hears `WATCHDOG=1` at least that often. Protocol: sd_notify(3), sd_watchdog_enabled(3).

`WatchdogThread` pings only while every registered `Heartbeat` is fresh, so a thread stuck inside
the interpreter gets the process restarted, while a worker merely waiting for a camera frame or a
broker (it still beats after each timed-out wait) keeps the service alive: degraded, not hung.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edge_runtime.supervision.heartbeat import Heartbeats

logger = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"

# How often STATUS= is refreshed when systemd runs no watchdog for us (Type=notify only).
STATUS_ONLY_INTERVAL = 10.0


def _socket_address(name: str) -> str | bytes:
    """The sendto() address for $NOTIFY_SOCKET: '@name' is the abstract socket '\\0name'."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


class SystemdNotifier:
    """Sends notify messages to systemd; does nothing when not started by systemd.

    Failures are logged and swallowed: a missing supervisor must never take the daemon down.
    """

    def __init__(self, socket_name: str | None) -> None:
        self._address = _socket_address(socket_name) if socket_name else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()  # the main thread and the watchdog thread both send
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        env = os.environ if environ is None else environ
        return cls(env.get(NOTIFY_SOCKET_ENV) or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send `fields` (e.g. "READY=1", "STATUS=...") as one datagram; True if it was sent."""
        if self._address is None:
            return False
        # One line per field: a newline inside a value would start a bogus field.
        payload = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(payload, self._address)
            except OSError as exc:
                if not self._warned:  # once: the supervisor going away is not worth a log flood
                    logger.warning("cannot notify systemd at %s: %s", self._address, exc)
                    self._warned = True
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self, status: str | None = None) -> bool:
        return self.notify("WATCHDOG=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def watchdog_period(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog timeout in seconds systemd expects pings within, or None when there is none.

    Like sd_watchdog_enabled(3): $WATCHDOG_USEC must be a positive integer, and when
    $WATCHDOG_PID is set it must name this process (the variables leak into children otherwise).
    """
    env = os.environ if environ is None else environ
    raw = env.get(WATCHDOG_USEC_ENV)
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        logger.warning("ignoring malformed %s=%r", WATCHDOG_USEC_ENV, raw)
        return None
    if usec <= 0:
        return None
    owner = env.get(WATCHDOG_PID_ENV)
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            logger.warning("ignoring malformed %s=%r", WATCHDOG_PID_ENV, owner)
            return None
    return usec / 1_000_000


@dataclass(frozen=True)
class WatchdogSettings:
    interval: float  # seconds between two loop turns (pings when healthy)
    max_age: float  # a heartbeat older than this means that thread is stuck
    enabled: bool  # systemd runs a watchdog: send WATCHDOG=1; otherwise only STATUS=

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, max_age: float | None = None
    ) -> WatchdogSettings:
        """Ping every half period (the systemd recommendation); a thread counts as stuck once it
        has not beaten for a whole period unless the caller knows a better bound."""
        period = watchdog_period(environ)
        if period is None:
            return cls(STATUS_ONLY_INTERVAL, max_age or STATUS_ONLY_INTERVAL * 3, enabled=False)
        return cls(period / 2, max_age or period, enabled=True)


class WatchdogThread(threading.Thread):
    """Pings the systemd watchdog while all heartbeats are fresh, refreshing STATUS= each turn."""

    def __init__(
        self,
        notifier: SystemdNotifier,
        heartbeats: Heartbeats,
        settings: WatchdogSettings,
        status: Callable[[], str],
    ) -> None:
        super().__init__(name="systemd-watchdog", daemon=True)
        self._notifier = notifier
        self._heartbeats = heartbeats
        self._settings = settings
        self._status = status
        self._stop_event = threading.Event()
        self._stalled: list[str] = []

    @property
    def stalled(self) -> list[str]:
        """The threads that were stuck at the last turn (empty while healthy)."""
        return list(self._stalled)

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        logger.debug(
            "watchdog thread started: interval %.2fs, max heartbeat age %.2fs, pings %s",
            self._settings.interval,
            self._settings.max_age,
            "on" if self._settings.enabled else "off",
        )
        # A ping right away: the first period starts when systemd forks us, not when we are ready.
        self.check_once()
        while not self._stop_event.wait(self._settings.interval):
            self.check_once()

    def check_once(self) -> None:
        stalled = self._heartbeats.stalled(self._settings.max_age)
        if stalled != self._stalled:
            if stalled:
                logger.error(
                    "no progress for %.1fs in %s: withholding watchdog pings so systemd restarts us",
                    self._settings.max_age,
                    ", ".join(stalled),
                )
            else:
                logger.warning("all threads progressing again: watchdog pings resumed")
            self._stalled = stalled
        if stalled:
            self._notifier.status(f"stuck: {', '.join(stalled)}")
            return
        try:
            text = self._status()
        except Exception:  # a status bug must not stop the pings of a healthy daemon
            logger.exception("status callback failed")
            text = "running"
        if self._settings.enabled:
            self._notifier.watchdog(text)
        else:
            self._notifier.status(text)
