"""Results out to the broker: status with last will, per-pipeline seq, reconnect with backoff.

The pipelines call `publish_result`; only this module knows paho. One named network thread drives
the client (connect, reconnect with jittered backoff, socket I/O); publishing from the worker threads
only queues. QoS 1 messages published while the broker is away stay queued (bounded) and go out
after the reconnect.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from edge_runtime.config.schema import AppConfig
from edge_runtime.publishing.backoff import Backoff
from edge_runtime.publishing.connection import make_client
from edge_runtime.publishing.payload import encode
from edge_runtime.publishing.topics import Topics
from edge_runtime.supervision.heartbeat import Heartbeats

logger = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"
MAX_QUEUED_MESSAGES = 10_000


class MqttPublisher:
    def __init__(self, app: AppConfig, heartbeats: Heartbeats | None = None) -> None:
        self.config = app.mqtt
        self.device = app.device.id
        self.topics = Topics(app.mqtt.topic_prefix, app.device.id)
        self.client_id = app.mqtt.client_id_for(app.device.id)
        self._client = make_client(app.mqtt, self.client_id)
        self._client.will_set(self.topics.status, OFFLINE, qos=1, retain=True)
        self._client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._backoff = Backoff(app.mqtt.reconnect_min_delay, app.mqtt.reconnect_max_delay)
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}
        self._pending: set[int] = set()
        self._acked_early: set[int] = set()  # acks that beat the publisher to the bookkeeping
        self._untracked: set[int] = set()  # status/state messages, acked but not counted
        self._idle = threading.Condition(self._lock)
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._heartbeats = heartbeats
        self._thread = threading.Thread(target=self._run, name="mqtt-network", daemon=True)
        self.published = 0
        self.connects = 0

    # -- the pipelines' side -------------------------------------------------------------------
    def publish_result(self, pipeline: str, body: dict[str, Any]) -> int:
        """Assign the next `seq` of `pipeline`, queue the message; returns the seq."""
        # One worker thread per pipeline publishes, so seq order is publish order. paho's own locks
        # are held while it calls on_publish, so ours must not be held around client.publish().
        with self._lock:
            seq = self._seq.get(pipeline, 0)
            self._seq[pipeline] = seq + 1
        body["seq"] = seq
        info = self._client.publish(self.topics.result(pipeline), encode(body), qos=self.config.qos)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            logger.error("result %s/%d not queued: %s", pipeline, seq, mqtt.error_string(info.rc))
        elif self.config.qos > 0:
            with self._lock:
                if info.mid in self._acked_early:
                    self._acked_early.discard(info.mid)
                    self.published += 1
                else:
                    self._pending.add(info.mid)
        return seq

    def publish_state(self, topic: str, payload: bytes, retain: bool = True) -> None:
        """Retained device state (stats, info); not waited for by flush()."""
        self._track_untracked(self._client.publish(topic, payload, qos=1, retain=retain).mid)

    def _track_untracked(self, mid: int) -> None:
        with self._lock:
            if mid in self._acked_early:
                self._acked_early.discard(mid)
            else:
                self._untracked.add(mid)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def flush(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged every queued result (or the timeout)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.5))
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Flush results, say `offline` (retained), disconnect, join the network thread."""
        if not self.flush(timeout):
            logger.warning("shutting down with %d results not acknowledged by the broker",
                           self.pending())
        if self.connected:
            info = self._client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
            self._track_untracked(info.mid)
            deadline = time.monotonic() + min(timeout, 5.0)
            while not info.is_published() and self.connected and time.monotonic() < deadline:
                time.sleep(0.02)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self._client.disconnect()

    # -- the network thread ----------------------------------------------------------------------
    def _run(self) -> None:
        beat = self._heartbeats.register("mqtt-network") if self._heartbeats else None
        connected_once = False
        while not self._stop.is_set():
            if beat:
                beat.beat()
            if not self._client.is_connected() and not self._socket_open():
                try:
                    if connected_once:
                        self._client.reconnect()
                    else:
                        self._client.connect(self.config.host, self.config.port, self.config.keepalive)
                    connected_once = True
                except (OSError, ValueError) as exc:
                    delay = self._backoff.next_delay()
                    logger.warning("cannot reach broker %s:%d (%s); retrying in %.1fs",
                                   self.config.host, self.config.port, exc, delay)
                    self._stop.wait(delay)
                    continue
            rc = self._client.loop(timeout=0.5)
            if rc not in (mqtt.MQTT_ERR_SUCCESS,) and not self._stop.is_set():
                delay = self._backoff.next_delay()
                logger.debug("mqtt loop: %s; reconnecting in %.1fs", mqtt.error_string(rc), delay)
                self._stop.wait(delay)
        if beat and self._heartbeats:
            self._heartbeats.unregister("mqtt-network")

    def _socket_open(self) -> bool:
        return self._client.socket() is not None

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            logger.error("broker %s:%d refused the connection: %s", self.config.host,
                         self.config.port, reason)
            return
        self.connects += 1
        self._backoff.reset()
        self._connected.set()
        logger.info("connected to broker %s:%d as %s", self.config.host, self.config.port,
                    self.client_id)
        self._track_untracked(client.publish(self.topics.status, ONLINE, qos=1, retain=True).mid)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._stop.is_set():
            logger.warning("lost the broker connection (%s); results are queued", reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        with self._idle:
            if mid in self._pending:
                self._pending.discard(mid)
                self.published += 1
                if not self._pending:
                    self._idle.notify_all()
            elif mid in self._untracked:
                self._untracked.discard(mid)
            else:
                self._acked_early.add(mid)
