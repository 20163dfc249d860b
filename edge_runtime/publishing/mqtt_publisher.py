"""Results out to the broker, at least once and in order per pipeline, across outages and crashes.

The pipelines call `publish_results` with a batch of one pipeline's results: QoS 1 results are
committed to the durable outbox (outbox/) in one transaction, which assigns their `seq`s, and the
call returns; the `mqtt-network` thread (network.py) sends them. Delivery is at least once:
consumers deduplicate on (`pipeline`, `seq`).

QoS 0 pipelines bypass the outbox (qos0.py): their results are sent when the broker is connected
and counted as `qos0_dropped` otherwise, and their seq restarts at 0 with the daemon.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from edge_runtime.config.schema import AppConfig
from edge_runtime.publishing.latest import LatestMessage
from edge_runtime.publishing.listeners import LinkListener
from edge_runtime.publishing.network import NetworkThread
from edge_runtime.publishing.outbox import Outbox, configured_outbox_path, open_outbox
from edge_runtime.messages.payload import encode
from edge_runtime.publishing.qos0 import Qos0Lane
from edge_runtime.publishing.stats import LinkState, StatsReporter
from edge_runtime.messages.topics import Topics
from edge_runtime.supervision.deadline import Deadline
from edge_runtime.supervision.heartbeat import Heartbeats

logger = logging.getLogger(__name__)

QOS0_QUEUE = 1000  # QoS 0 results waiting for the network thread (only while it is busy)
# Seconds without a broker connection after which stop() does not wait to flush.
OUTAGE = 3.0


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
            path = configured_outbox_path(app)
            outbox = open_outbox(path, app.outbox.max_messages, app.outbox.max_bytes,
                                 app.outbox.sync)
        self.outbox = outbox
        self.stats_reporter = StatsReporter(app.device.id)
        self._qos0 = Qos0Lane(QOS0_QUEUE)
        self._network = NetworkThread(self.config, self.client_id, self.topics, outbox,
                                      self._qos0, self.stats, heartbeats,
                                      reconnect=app.retry.broker, stats_interval=app.stats.interval)

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
        encoders = [_encoder(body) for body in bodies]
        try:
            if self.config.qos == 0:
                return self._qos0.add(pipeline, topic, encoders, self.connected)
            return self.outbox.append_many(pipeline, topic, self.config.qos, encoders)
        finally:
            self._network.wake()

    def publish_events(self, pipeline: str, bodies: Sequence[dict[str, Any]]) -> list[int]:
        """A pipeline's object events (tracking/objects.py): QoS 1 through the outbox, with a
        `seq` of their own (outbox stream `<pipeline>/events`; '/' is not allowed in names)."""
        try:
            return self.outbox.append_many(f"{pipeline}/events", self.topics.events(pipeline), 1,
                                           [_encoder(body) for body in bodies])
        finally:
            self._network.wake()

    def publish_latest(self, topic: str, payload: bytes, qos: int = 1,
                       retain: bool = True) -> None:
        """A retained latest value (latest.py): replaces one not yet sent, never on disk."""
        self._network.latest.put(LatestMessage(topic, payload, qos, retain))
        self._network.wake()

    def add_listener(self, listener: LinkListener) -> None:
        """Told about each connection, receives its subscriptions (before start())."""
        self._network.listeners.append(listener)

    def attach_stats(self, reporter: StatsReporter) -> None:
        """The reporter that knows the pipelines (set by the daemon before start())."""
        self.stats_reporter = reporter

    @property
    def connected(self) -> bool:
        return self._network.connected.is_set()

    @property
    def connects(self) -> int:
        return self._network.connects

    @property
    def qos0_dropped(self) -> int:
        return self._qos0.dropped

    def pending(self) -> int:
        """Results not yet acknowledged by the broker (on disk, or QoS 0 in memory)."""
        return self.outbox.depth() + len(self._qos0)

    def stats(self) -> dict[str, Any]:
        """The stats message's content, as it would be published now."""
        net = self._network
        link = LinkState(self.connected, net.connects, net.disconnects, net.resent,
                         net.inflight, self._qos0.dropped)
        return self.stats_reporter.payload(link, self.outbox.snapshot())

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        depth = self.outbox.depth()
        if depth:
            logger.info("outbox %s holds %d undelivered result(s) from before; sending them first",
                        self.outbox.path or "(memory)", depth)
        self._network.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._network.connected.wait(timeout)

    @property
    def running(self) -> bool:
        """The network thread is alive (it only ends on stop())."""
        return self._network.alive

    def flush(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged every result committed so far (or the timeout)."""
        deadline = time.monotonic() + timeout
        drained = self._network.drained
        with drained:
            while self.pending():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._network.alive:
                    return False
                drained.wait(min(remaining, 0.2))
        return True

    def stop(self, timeout: float = 10.0, goodbye: float = 3.0) -> None:
        """Flush results, publish final stats and `offline` (retained), disconnect, join: all
        within `timeout` seconds, of which the last `goodbye` are kept for the goodbye.

        With the broker unreachable for OUTAGE seconds already and a durable outbox there is
        nothing to wait for: the results stay on disk and the next start sends them. (A connection
        lost a moment ago is usually back within the flush: that one is waited for.)
        """
        deadline = Deadline.after(timeout)
        goodbye = min(goodbye, timeout)
        durable = self.outbox.backend == "sqlite"
        if self.pending():
            if durable and self._network.disconnected_for() >= OUTAGE:
                delivered = False
            else:
                delivered = self.flush(deadline.remaining(keep=goodbye))
            if not delivered:
                logger.warning("shutting down with %d result(s) not acknowledged by the broker "
                               "(%s); %s", self.pending(),
                               "connected" if self.connected else "broker unreachable",
                               "they stay in the outbox for the next start" if durable
                               else "they are lost (memory outbox)")
        self._network.stop(deadline)
        self.outbox.close()
