"""Results out to the broker, at least once and in order per pipeline, across outages and crashes.

The pipelines call `publish_results` with a batch of one pipeline's results: QoS 1 results are
committed to the durable outbox (outbox.py) in one transaction, which assigns their `seq`s, and
the call returns. Only this module knows paho, and only the named
`mqtt-network` thread touches the paho client: it connects (exponential backoff with full jitter),
hands outbox rows to the client in id (= per-pipeline seq) order, at most `max_inflight` at a time,
and deletes a row when its PUBACK arrives (`on_publish`, mid -> row). paho's own queue therefore
never holds more than the in-flight window: the backlog stays on disk.

Every connection uses a new paho client with a clean session. paho would re-send the QoS 1
messages it had in flight when a connection drops; a fresh client has none, and this module re-sends
every unacknowledged row itself, from the oldest, after each (re)connect. A result whose PUBACK was
lost with the connection therefore reaches the broker twice (counted as `resent` in the stats):
delivery is at least once, consumers deduplicate on (`pipeline`, `seq`).

QoS 0 pipelines bypass the outbox: their results are sent when the broker is connected and counted
as `qos0_dropped` otherwise, and their seq restarts at 0 with the daemon.

The worker threads wake the network thread through a socket pair, so a new result goes out at once
instead of at the next poll; the thread drives paho with its documented external-loop calls
(`loop_read`, `loop_write`, `loop_misc`) around its own select().
"""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

import paho.mqtt.client as mqtt

from edge_runtime.config.schema import AppConfig
from edge_runtime.publishing.backoff import Backoff
from edge_runtime.publishing.connection import make_client
from edge_runtime.publishing.outbox import (
    EncodeErrors,
    Outbox,
    OutboxMessage,
    default_outbox_path,
    open_outbox,
)
from edge_runtime.publishing.payload import encode
from edge_runtime.publishing.stats import LinkState, StatsReporter
from edge_runtime.publishing.topics import Topics
from edge_runtime.ratelimit import RateLimitedLogger
from edge_runtime.supervision.heartbeat import Heartbeats
from edge_runtime.supervision.threads import NamedThread

logger = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"
POLL = 0.5  # seconds the network thread waits in select() before it beats its heartbeat again
QOS0_QUEUE = 1000  # QoS 0 results waiting for the network thread (only while it is busy)
STATE_HEADROOM = 16  # paho in-flight slots kept free for status/stats beyond the result window
# A result is dropped as poison when the broker closed this many connections in a row while it
# was the only result in flight and unacknowledged (e.g. larger than mosquitto's max_packet_size):
# otherwise it would block every later result forever.
POISON_STRIKES = 3
POISON_WINDOW_S = 5.0  # ... and did so within this many seconds of the CONNACK


def _encoder(body: dict[str, Any]) -> Callable[[int], bytes]:
    """The body's encoding once the outbox has given it its seq."""
    def encoded(seq: int) -> bytes:
        body["seq"] = seq
        return encode(body)
    return encoded


class MqttPublisher:
    def __init__(self, app: AppConfig, heartbeats: Heartbeats | None = None,
                 outbox: Outbox | None = None) -> None:
        self.config = app.mqtt
        self.device = app.device.id
        self.topics = Topics(app.mqtt.topic_prefix, app.device.id)
        self.client_id = app.mqtt.client_id_for(app.device.id)
        if outbox is None:
            path = app.mqtt.outbox_path or default_outbox_path(app.file)
            outbox = open_outbox(path, app.mqtt.outbox_max_messages, app.mqtt.outbox_max_bytes,
                                 app.mqtt.outbox_sync)
        self.outbox = outbox
        self.window = app.mqtt.max_inflight
        self.stats_reporter = StatsReporter(app.device.id)
        self._heartbeats = heartbeats
        self._backoff = Backoff(app.mqtt.reconnect_min_delay, app.mqtt.reconnect_max_delay)
        self._warn = RateLimitedLogger(logger)
        self._thread = NamedThread(target=self._run, name="mqtt-network", daemon=True)
        self._wake_r, self._wake_w = socket.socketpair()
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        self._connected = threading.Event()
        self._closing = threading.Event()  # stop(): say goodbye and leave
        self._drained = threading.Condition()  # notified when acks shrink the outbox
        self._lock = threading.Lock()  # QoS 0 seq and queue, shared with the workers
        self._qos0_seq: dict[str, int] = {}
        self._qos0: deque[tuple[str, bytes]] = deque()
        # -- network thread only ---------------------------------------------------------------
        self._client: mqtt.Client | None = None
        self._inflight: dict[int, OutboxMessage] = {}  # paho mid -> outbox row, this connection
        self._acked: list[int] = []  # mids whose PUBACK arrived, processed after each read
        self._cursor = 0  # highest outbox id handed to the client on this connection
        self._high_water = 0  # highest outbox id ever handed to a client: below it = a resend
        self._connect_started = 0.0
        self._next_stats = 0.0
        self._beat: Any = None
        self._disconnect_reason = ""
        self._acks_this_connection = 0
        self._connected_at = 0.0
        self._suspect: int | None = None  # outbox id sent alone after fruitless connections
        self._strikes = 0
        # -- counters (written by the network thread, read by anyone) ----------------------------
        self.connects = 0
        self.disconnects = 0
        self.resent = 0
        self.published = 0
        self.qos0_dropped = 0

    # -- the pipelines' side -------------------------------------------------------------------
    def publish_result(self, pipeline: str, body: dict[str, Any]) -> int:
        """Assign the pipeline's next `seq`, commit the message; returns the seq.

        QoS 1: the result is on disk when this returns (and counted if the bounds drop it later).
        """
        return self.publish_results(pipeline, [body])[0]

    def publish_results(self, pipeline: str, bodies: Sequence[dict[str, Any]]) -> list[int]:
        """`publish_result` for several results of one pipeline, in order: one commit for all.

        Results that cannot be encoded take no seq: EncodeErrors lists the stored seqs and the
        errors (the stored results are published as usual).
        """
        topic = self.topics.result(pipeline)
        if self.config.qos == 0:
            seqs, errors = [], []
            with self._lock:
                for body in bodies:
                    seq = self._qos0_seq.get(pipeline, 0)
                    try:
                        payload = _encoder(body)(seq)
                    except Exception as exc:  # noqa: BLE001 - as the outbox does: no seq taken
                        errors.append(exc)
                        continue
                    self._qos0_seq[pipeline] = seq + 1
                    seqs.append(seq)
                    if len(self._qos0) >= QOS0_QUEUE or not self._connected.is_set():
                        self.qos0_dropped += 1
                    else:
                        self._qos0.append((topic, payload))
            if errors:
                self._wake()
                raise EncodeErrors(seqs, errors)
        else:
            seqs = self.outbox.append_many(pipeline, topic, self.config.qos,
                                           [_encoder(body) for body in bodies])
        self._wake()
        return seqs

    def attach_stats(self, reporter: StatsReporter) -> None:
        """The reporter that knows the pipelines (set by the daemon before start())."""
        self.stats_reporter = reporter

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def pending(self) -> int:
        """Results not yet acknowledged by the broker (on disk, or QoS 0 in memory)."""
        with self._lock:
            qos0 = len(self._qos0)
        return self.outbox.depth() + qos0

    def stats(self) -> dict[str, Any]:
        """The stats message's content, as it would be published now."""
        link = LinkState(self.connected, self.connects, self.disconnects, self.resent,
                         len(self._inflight), self.qos0_dropped)
        return self.stats_reporter.payload(link, self.outbox.snapshot())

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        depth = self.outbox.depth()
        if depth:
            logger.info("outbox %s holds %d undelivered result(s) from before; sending them first",
                        self.outbox.path or "(memory)", depth)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def running(self) -> bool:
        """The network thread is alive (it only ends on stop())."""
        return self._thread.is_alive()

    def flush(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged every result committed so far (or the timeout)."""
        deadline = time.monotonic() + timeout
        with self._drained:
            while self.pending():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._drained.wait(min(remaining, 0.2))
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Flush results, publish final stats and `offline` (retained), disconnect, join."""
        if not self.flush(timeout):
            logger.warning("shutting down with %d result(s) not acknowledged by the broker; %s",
                           self.pending(), "they stay in the outbox for the next start"
                           if self.outbox.backend == "sqlite" else "they are lost (memory outbox)")
        self._closing.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)
            if self._thread.is_alive():
                logger.warning("the mqtt-network thread did not stop")
        self.outbox.close()
        for sock in (self._wake_r, self._wake_w):
            sock.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the pair is full (the thread will wake anyway) or closed (stopping)

    # -- the network thread ----------------------------------------------------------------------
    def _run(self) -> None:
        beat = self._heartbeats.register("mqtt-network") if self._heartbeats else None
        self._beat = beat
        try:
            while True:
                if beat:
                    beat.beat()
                try:
                    if self._client is None:
                        if self._closing.is_set():
                            break
                        if not self._connect():
                            self._pause(self._backoff.next_delay())
                            continue
                    if self._closing.is_set() and self._say_goodbye():
                        break
                    self._step()
                except Exception:  # noqa: BLE001 - a dead network thread would stop all delivery
                    logger.exception("mqtt-network: unexpected error; reconnecting")
                    self._lost("unexpected error")
        finally:
            if self._client is not None:
                self._drop_client()
            if beat and self._heartbeats:
                self._heartbeats.unregister("mqtt-network")

    def _connect(self) -> bool:
        client = make_client(self.config, self.client_id)
        client.will_set(self.topics.status, OFFLINE, qos=1, retain=True)
        client.max_inflight_messages_set(self.window + STATE_HEADROOM)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        try:
            client.connect(self.config.host, self.config.port, self.config.keepalive)
        except (OSError, ValueError) as exc:
            self._warn.warning("connect", "cannot reach broker %s:%d (%s); retrying with backoff; "
                               "%d result(s) wait in the outbox", self.config.host,
                               self.config.port, exc, self.outbox.depth())
            return False
        self._client = client
        self._inflight.clear()
        self._acked.clear()
        self._acks_this_connection = 0
        self._cursor = 0
        self._connect_started = time.monotonic()
        return True

    def _step(self) -> None:
        """One round: send what fits the window, wait for the socket or a wake-up, process acks."""
        client = self._client
        assert client is not None
        if self._connected.is_set():
            self._send_stats_if_due(client)
            self._fill_window(client)
        elif time.monotonic() - self._connect_started > \
                client.connect_timeout + self.config.keepalive:
            self._lost("no CONNACK from the broker")
            return
        sock = client.socket()
        if sock is None:
            self._lost("socket closed")
            return
        pending_tls = sock.pending() if hasattr(sock, "pending") else 0
        try:
            readable, writable, _ = select.select(
                [sock, self._wake_r], [sock] if client.want_write() else [], [],
                0.0 if pending_tls else POLL)
        except (OSError, ValueError) as exc:
            self._lost(f"select failed: {exc}")
            return
        if self._wake_r in readable:
            try:
                while self._wake_r.recv(4096):
                    pass
            except (BlockingIOError, OSError):
                pass
        rc = mqtt.MQTT_ERR_SUCCESS
        if sock in readable or pending_tls:
            rc = client.loop_read()
        if rc == mqtt.MQTT_ERR_SUCCESS and sock in writable:
            rc = client.loop_write()
        if rc == mqtt.MQTT_ERR_SUCCESS:
            rc = client.loop_misc()
        self._process_acks()
        if rc != mqtt.MQTT_ERR_SUCCESS or client.socket() is None:
            self._lost(mqtt.error_string(rc) if rc != mqtt.MQTT_ERR_SUCCESS
                       else self._disconnect_reason or "socket closed")

    def _fill_window(self, client: mqtt.Client) -> None:
        while True:
            with self._lock:
                if not self._qos0:
                    break
                topic, payload = self._qos0.popleft()
            client.publish(topic, payload, qos=0)
        # While a result is suspected of making the broker drop us, it goes out alone.
        window = 1 if self._suspect is not None else self.window
        room = window - len(self._inflight)
        if room <= 0:
            return
        for message in self.outbox.pending(self._cursor, room):
            try:
                info = client.publish(message.topic, message.payload, qos=message.qos)
            except ValueError as exc:  # paho refuses it outright (e.g. over MQTT's 256 MB)
                self._drop_poison(message, f"the MQTT client refuses it: {exc}")
                continue
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # The connection just broke; the loop notices and every unacked row is resent.
                logger.debug("publish of %s/%d failed: %s", message.pipeline, message.seq,
                             mqtt.error_string(info.rc))
                return
            self._inflight[info.mid] = message
            self._cursor = message.id
            if message.id <= self._high_water:
                self.resent += 1
            else:
                self._high_water = message.id

    def _process_acks(self) -> None:
        if not self._acked:
            return
        acked = [self._inflight.pop(mid) for mid in self._acked if mid in self._inflight]
        self._acked.clear()
        if acked:
            self._acks_this_connection += len(acked)
            if self._suspect is not None and any(m.id == self._suspect for m in acked):
                self._suspect, self._strikes = None, 0  # it went through: not poison
            self.published += self.outbox.ack(acked)
            with self._drained:
                self._drained.notify_all()

    def _send_stats_if_due(self, client: mqtt.Client) -> None:
        if time.monotonic() >= self._next_stats:
            self._publish_stats(client)

    def _publish_stats(self, client: mqtt.Client) -> None:
        self._next_stats = time.monotonic() + self.config.stats_interval
        try:
            payload = json.dumps(self.stats(), separators=(",", ":")).encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - a stats bug must never stop the results
            self._warn.warning("stats", "cannot build the stats message: %r", exc)
            return
        client.publish(self.topics.stats, payload, qos=1, retain=True)

    def _say_goodbye(self) -> bool:
        """On stop: final stats and `offline`, wait for their PUBACKs, disconnect; then True."""
        client = self._client
        assert client is not None
        if not self._connected.is_set():
            self._drop_client()
            return True
        self._publish_stats(client)
        offline = client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
        deadline = time.monotonic() + 5.0
        while not offline.is_published() and self._client is not None \
                and time.monotonic() < deadline:
            self._step()
        if self._client is not None:
            self._client.disconnect()  # a clean DISCONNECT: the broker discards the last will
            self._client.loop_write()
            self._drop_client()
        return True

    def _lost(self, why: str) -> None:
        was_connected = self._connected.is_set()
        unacked = sorted(self._inflight.values(), key=lambda m: m.id)
        self._drop_client()
        if was_connected:
            self.disconnects += 1
            self._judge_connection(unacked)
            if not self._closing.is_set():
                logger.warning("lost the broker connection (%s); %d result(s) wait in the outbox "
                               "and are sent again after the reconnect", why, self.outbox.depth())
        self._pause(self._backoff.next_delay())

    def _judge_connection(self, unacked: list[OutboxMessage]) -> None:
        """After a lost connection: was the oldest unacknowledged result what the broker hated?"""
        # A broker that refuses a packet closes the connection at once; a flaky network path
        # drops it after a keepalive or more: only quick, fruitless connections count.
        quick = time.monotonic() - self._connected_at < POISON_WINDOW_S
        if self._acks_this_connection or not unacked or not quick:
            self._suspect, self._strikes = None, 0
            return
        oldest = unacked[0]
        if self._suspect == oldest.id and len(unacked) == 1:
            self._strikes += 1
        else:
            self._suspect, self._strikes = oldest.id, 0  # probe it alone next time
        if self._strikes >= POISON_STRIKES:
            self._drop_poison(oldest, f"the broker closed the connection {self._strikes} times "
                              "while it was the only result in flight")

    def _drop_poison(self, message: OutboxMessage, why: str) -> None:
        self._suspect, self._strikes = None, 0
        if self.outbox.reject(message):
            logger.error("dropping result %s/%d (%d bytes): %s; counted in the stats as dropped",
                         message.pipeline, message.seq, len(message.payload), why)
        self._cursor = max(self._cursor, message.id)

    def _pause(self, delay: float) -> None:
        """Wait out a backoff delay (cut short by stop()), beating the heartbeat meanwhile."""
        deadline = time.monotonic() + delay
        while not self._closing.is_set():
            if self._beat:
                self._beat.beat()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._closing.wait(min(remaining, POLL))

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        self._connected.clear()
        self._disconnect_reason = ""
        self._inflight.clear()
        self._acked.clear()
        if client is not None:
            sock = client.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass

    # -- paho callbacks (all run on the network thread, inside loop_read/loop_write) -------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._warn.warning("refused", "broker %s:%d refused the connection: %s",
                               self.config.host, self.config.port, reason)
            return
        self.connects += 1
        self._connected_at = time.monotonic()
        self._backoff.reset()
        self._connected.set()
        logger.info("connected to broker %s:%d as %s; %d result(s) to send from the outbox",
                    self.config.host, self.config.port, self.client_id, self.outbox.depth())
        # Retained state goes out again on every connection (the broker may have restarted).
        client.publish(self.topics.status, ONLINE, qos=1, retain=True)
        self._next_stats = 0.0  # stats right away: they say what happened while we were away

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        # paho calls this inside loop_read/loop_write/loop_misc, whose error code then makes
        # _step() call _lost(), which does the bookkeeping.
        self._disconnect_reason = str(reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        if mid in self._inflight:  # else status/stats: nothing waits for those
            self._acked.append(mid)
