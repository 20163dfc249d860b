"""The `mqtt-network` thread: the only thread that touches the paho client.

It connects (exponential backoff with full jitter), hands outbox rows to the client in id
(= per-pipeline seq) order, at most `window` at a time, and deletes a row when its PUBACK arrives
(`on_publish`, mid -> row). paho's own queue therefore never holds more than the in-flight
window: the backlog stays on disk. It also owns the status topic (`online` after each connect,
the last will, `offline` on stop) and sends the retained stats when due.

Every connection uses a new paho client with a clean session. paho would re-send the QoS 1
messages it had in flight when a connection drops; a fresh client has none, and this thread
re-sends every unacknowledged row itself, from the oldest, after each (re)connect. A result whose
PUBACK was lost with the connection therefore reaches the broker twice (counted as `resent`).

The worker threads wake it through a socket pair, so a new result goes out at once instead of at
the next poll; it drives paho with its documented external-loop calls (`loop_read`,
`loop_write`, `loop_misc`) around its own select().
"""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
from typing import Any, Callable

from edge_runtime.config.schema import BackoffConfig, MqttConfig, RetryConfig, StatsConfig
from edge_runtime.supervision.backoff import Backoff
from edge_runtime.publishing.latest import LatestValues
from edge_runtime.publishing.listeners import Link, LinkListener, dispatch
from edge_runtime.publishing.outbox import Outbox, OutboxMessage
from edge_runtime.publishing.poison import PoisonJudge
from edge_runtime.publishing.qos0 import Qos0Lane
from edge_runtime.messages.topics import Topics
from edge_runtime.ratelimit import RateLimitedLogger
from edge_runtime.supervision.deadline import Deadline
from edge_runtime.supervision.heartbeat import Heartbeats
from edge_runtime.supervision.threads import NamedThread
from edge_runtime.transport import mqtt
from edge_runtime.transport.mqtt import connect, make_client

logger = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"
POLL = 0.5  # seconds the network thread waits in select() before it beats its heartbeat again
GOODBYE = 5.0  # seconds stop() waits at most for the PUBACK of `offline`
STATE_HEADROOM = 16  # paho in-flight slots kept free for status/stats beyond the result window


class NetworkThread:
    def __init__(self, config: MqttConfig, client_id: str, topics: Topics, outbox: Outbox,
                 qos0: Qos0Lane, stats: Callable[[], dict[str, Any]],
                 heartbeats: Heartbeats | None, reconnect: BackoffConfig | None = None,
                 stats_interval: float = StatsConfig.interval) -> None:
        """`reconnect`: [retry] broker; `stats_interval`: [stats] interval."""
        self.config = config
        self.client_id = client_id
        self.topics = topics
        self.outbox = outbox
        self.window = config.max_inflight
        self._qos0 = qos0
        self._stats = stats
        self._heartbeats = heartbeats
        reconnect = reconnect or RetryConfig().broker
        self._backoff = Backoff(reconnect.min_delay, reconnect.max_delay)
        self.stats_interval = stats_interval
        self._warn = RateLimitedLogger(logger)
        self._thread = NamedThread(target=self._run, name="mqtt-network", daemon=True)
        self._wake_r, self._wake_w = socket.socketpair()
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        self.connected = threading.Event()
        self.closing = threading.Event()  # stop(): say goodbye and leave
        self.drained = threading.Condition()  # notified when acks shrink the outbox
        self.latest = LatestValues()  # retained latest-value messages (latest.py)
        self.listeners: list[LinkListener] = []  # subscribers to the connection (listeners.py)
        self._on_suback: dict[int, Callable[[], None]] = {}
        # -- this thread only --------------------------------------------------------------------
        self._client: mqtt.Client | None = None
        self._inflight: dict[int, OutboxMessage] = {}  # paho mid -> outbox row, this connection
        self._acked: list[int] = []  # mids whose PUBACK arrived, processed after each read
        self._cursor = 0  # highest outbox id handed to the client on this connection
        self._high_water = 0  # highest outbox id ever handed to a client: below it = a resend
        self._connect_started = 0.0
        self._goodbye_by = Deadline.after(GOODBYE)  # set again by stop()
        self._down_since = time.monotonic()  # when the last connection ended (read by anyone)
        self._next_stats = 0.0
        self._beat: Any = None
        self._disconnect_reason = ""
        self._acks_this_connection = 0
        self._connected_at = 0.0
        self._poison = PoisonJudge()
        self._earlier = 0  # results the outbox held at start (an earlier run's), set by start()
        # -- counters (written by this thread, read by anyone) -----------------------------------
        self.connects = 0
        self.disconnects = 0
        self.resent = 0

    def disconnected_for(self) -> float:
        """Seconds since the broker connection was lost (or since start); 0 while connected."""
        if self.connected.is_set():
            return 0.0
        return time.monotonic() - self._down_since

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._earlier = self.outbox.depth()
        self._thread.start()

    def stop(self, deadline: Deadline | None = None) -> None:
        """Say goodbye (final stats, `offline`), disconnect and join, by `deadline` (default: in
        GOODBYE seconds and a little more); closes the wake-up pair."""
        deadline = deadline or Deadline.after(GOODBYE + 1.0)
        self._goodbye_by = deadline
        self.closing.set()
        self.wake()
        if self._thread.is_alive():
            self._thread.join(timeout=deadline.remaining())
            if self._thread.is_alive():
                logger.warning("the mqtt-network thread did not stop in time")
        for sock in (self._wake_r, self._wake_w):
            sock.close()

    def wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the pair is full (the thread will wake anyway) or closed (stopping)

    # -- the loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        beat = self._heartbeats.register("mqtt-network") if self._heartbeats else None
        self._beat = beat
        try:
            while True:
                if beat:
                    beat.beat()
                try:
                    if self._client is None:
                        if self.closing.is_set():
                            break
                        if not self._connect():
                            self._pause(self._backoff.next_delay())
                            continue
                    if self.closing.is_set() and self._say_goodbye():
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
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._on_suback.clear()
        try:
            connect(client, self.config)
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
        if self.connected.is_set():
            if time.monotonic() >= self._next_stats:
                self._publish_stats(client)
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
        while (queued := self._qos0.take()) is not None:
            client.publish(queued[0], queued[1], qos=0)
        for latest in self.latest.take():
            client.publish(latest.topic, latest.payload, qos=latest.qos, retain=latest.retain)
        # While a result is suspected of making the broker drop us, it goes out alone.
        room = self._poison.window(self.window) - len(self._inflight)
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
            self._poison.acked(acked)
            self.outbox.ack(acked)
            with self.drained:
                self.drained.notify_all()

    def _publish_stats(self, client: mqtt.Client) -> None:
        self._next_stats = time.monotonic() + self.stats_interval
        try:
            payload = json.dumps(self._stats(), separators=(",", ":")).encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - a stats bug must never stop the results
            self._warn.warning("stats", "cannot build the stats message: %r", exc)
            return
        client.publish(self.topics.stats, payload, qos=1, retain=True)

    def _say_goodbye(self) -> bool:
        """On stop: final stats and `offline`, wait for their PUBACKs, disconnect; then True."""
        client = self._client
        assert client is not None
        if not self.connected.is_set():
            self._drop_client()
            return True
        self._publish_stats(client)
        offline = client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
        # Until the shutdown's deadline, keeping a moment for the DISCONNECT itself.
        wait = min(GOODBYE, self._goodbye_by.remaining(keep=0.2))
        deadline = time.monotonic() + wait
        while not offline.is_published() and self._client is not None \
                and time.monotonic() < deadline:
            self._step()
        if self._client is not None:
            self._client.disconnect()  # a clean DISCONNECT: the broker discards the last will
            self._client.loop_write()
            self._drop_client()
        return True

    def _lost(self, why: str) -> None:
        was_connected = self.connected.is_set()
        unacked = sorted(self._inflight.values(), key=lambda m: m.id)
        self._drop_client()
        if was_connected:
            self.disconnects += 1
            poison = self._poison.connection_lost(unacked, self._acks_this_connection,
                                                  time.monotonic() - self._connected_at)
            if poison is not None:
                self._drop_poison(poison, f"the broker closed the connection "
                                  f"{self._poison.strikes} times while it was the only result "
                                  "in flight")
            if not self.closing.is_set():
                logger.warning("lost the broker connection (%s); %d result(s) wait in the outbox "
                               "and are sent again after the reconnect", why, self.outbox.depth())
        self._pause(self._backoff.next_delay())

    def _drop_poison(self, message: OutboxMessage, why: str) -> None:
        self._poison.clear()
        if self.outbox.reject(message):
            logger.error("dropping result %s/%d (%d bytes): %s; counted in the stats as dropped",
                         message.pipeline, message.seq, len(message.payload), why)
        self._cursor = max(self._cursor, message.id)

    def _pause(self, delay: float) -> None:
        """Wait out a backoff delay (cut short by stop()), beating the heartbeat meanwhile."""
        deadline = time.monotonic() + delay
        while not self.closing.is_set():
            if self._beat:
                self._beat.beat()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.closing.wait(min(remaining, POLL))

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if self.connected.is_set():
            self._down_since = time.monotonic()
        self.connected.clear()
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

    # -- paho callbacks (all run on this thread, inside loop_read/loop_write) --------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._warn.warning("refused", "broker %s:%d refused the connection: %s",
                               self.config.host, self.config.port, reason)
            return
        self.connects += 1
        self._connected_at = time.monotonic()
        self._backoff.reset()
        self.connected.set()
        logger.info("connected to broker %s:%d as %s%s", self.config.host, self.config.port,
                    self.client_id, self._backlog())
        # Retained state goes out again on every connection (the broker may have restarted).
        client.publish(self.topics.status, ONLINE, qos=1, retain=True)
        self._next_stats = 0.0  # stats right away: they say what happened while we were away
        dispatch(self.listeners, lambda listener: listener.on_connect(Link(client, self._on_suback)))

    def _backlog(self) -> str:
        """What the outbox holds to send, for the connect log line. On the first connection the
        results of an earlier run (found at start) are told apart from this run's first ones,
        which a brand-new outbox already holds when the connection comes up."""
        depth = self.outbox.depth()
        if self.connects > 1:
            return f"; {depth} result(s) waiting in the outbox" if depth else ""
        earlier = min(self._earlier, depth)
        parts = ([f"{earlier} result(s) from an earlier run"] if earlier else []) + (
            [f"{depth - earlier} produced while connecting"] if depth > earlier else [])
        return f"; to send: {', '.join(parts)}" if parts else ""

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        # paho calls this inside loop_read/loop_write/loop_misc, whose error code then makes
        # _step() call _lost(), which does the bookkeeping.
        self._disconnect_reason = str(reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        if mid in self._inflight:  # else status/stats: nothing waits for those
            self._acked.append(mid)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        done = self._on_suback.pop(mid, None)
        if done is not None:
            try:
                done()
            except Exception:  # noqa: BLE001 - a listener's bug must not break the connection
                logger.exception("MQTT subscription callback failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.Message) -> None:
        topic, payload, retained = message.topic, bytes(message.payload), bool(message.retain)
        dispatch(self.listeners, lambda listener: listener.on_message(topic, payload, retained))
