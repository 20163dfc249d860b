"""The daemon's Home Assistant side on the broker connection (a publishing LinkListener).

On each connection it subscribes, in this order, to its own discovery topic (first connection
only: the retained message of the previous run says which entities existed) and then to
`{ha prefix}/status` and, with `control = true`, the pipelines' command topics. When the broker
acknowledges the second subscription it has delivered the first's retained message, so the
discovery it then publishes can remove the entities of pipelines or labels no longer configured
(discovery.with_removals). Discovery goes out again whenever Home Assistant says `online`
(its birth message after a restart). Entity states and control states are kept and put again
after every (re)connect: a broker restarted without persistence forgot them.

Everything here runs on the network thread or puts latest values: nothing blocks it. Entity
states come from the pipelines' publish threads; the network thread copies them under a lock on a
(re)connect (a copy is not one step: the garbage collector may switch threads in the middle).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

from edge_runtime.config.integration import HomeAssistantConfig
from edge_runtime.homeassistant.discovery import (
    HaTopics,
    PipelineInfo,
    discovery_payload,
    object_id,
    with_removals,
)
from edge_runtime.publishing.listeners import Link
from edge_runtime.messages.topics import Topics

logger = logging.getLogger(__name__)

LatestSink = Callable[[str, bytes], None]  # (topic, payload): a retained latest value
ON, OFF = b"ON", b"OFF"


class HomeAssistantService:
    def __init__(self, config: HomeAssistantConfig, device: str, topics: Topics,
                 pipelines: list[PipelineInfo], sink: LatestSink,
                 control: Callable[[str, bool], None] | None = None) -> None:
        self.config = config
        self.device = device
        self.topics = HaTopics(topics, config.prefix)
        self.pipelines = pipelines
        self.discovery_topic = self.topics.discovery(object_id(device))
        self._sink = sink
        self._control = control if config.control else None
        self._commands = {self.topics.control_set(p.name): p.name for p in pipelines} \
            if self._control else {}
        self._running = {p.name: True for p in pipelines}
        self._states: dict[str, bytes] = {}  # state topic -> last payload
        self._states_lock = threading.Lock()  # a pipeline's first state adds a key
        self._previous: dict[str, Any] | None = None
        self._announced = False  # discovery published once this run

    def payload(self) -> dict[str, Any]:
        current = discovery_payload(self.device, self.topics, self.pipelines,
                                    self.config.control)
        return with_removals(current, self._previous)

    # -- what the pipelines call (their publishing threads) --------------------------------------
    def state(self, pipeline: str, payload: bytes) -> None:
        topic = self.topics.state(pipeline)
        with self._states_lock:
            self._states[topic] = payload
        self._sink(topic, payload)

    # -- LinkListener (network thread) -------------------------------------------------------------
    def on_connect(self, link: Link) -> None:
        if not self._announced:
            link.subscribe([self.discovery_topic])
        link.subscribe([self.topics.ha_status, *self._commands],
                       done=lambda: self._subscribed(link))

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic == self.discovery_topic:
            if not self._announced and payload:
                try:
                    self._previous = json.loads(payload)
                except ValueError:
                    logger.warning("ignoring an unreadable retained discovery message on %s",
                                   topic)
        elif topic == self.topics.ha_status:
            if payload.strip() == b"online" and self._announced:
                logger.info("Home Assistant is online; publishing discovery again")
                self._publish_discovery()
        elif topic in self._commands:
            self._command(self._commands[topic], payload.strip().upper())

    # -- internals ---------------------------------------------------------------------------------
    def _subscribed(self, link: Link) -> None:
        if not self._announced:
            link.unsubscribe([self.discovery_topic])
        self._publish_discovery()
        self._announced = True
        with self._states_lock:
            states = list(self._states.items())
        for topic, payload in states:
            self._sink(topic, payload)
        if self._control:
            for name, running in self._running.items():
                self._sink(self.topics.control(name), ON if running else OFF)

    def _publish_discovery(self) -> None:
        payload = self.payload()
        self._sink(self.discovery_topic, json.dumps(payload, separators=(",", ":")).encode())
        if self._previous is not None and not self._announced:
            removed = [k for k, v in payload["cmps"].items() if set(v) == {"p"}]
            if removed:
                logger.info("Home Assistant: removing entities no longer configured: %s",
                            ", ".join(removed))

    def _command(self, pipeline: str, payload: bytes) -> None:
        if payload not in (ON, OFF):
            logger.warning("ignoring command %r on %s (expected ON or OFF)", payload[:20],
                           self.topics.control_set(pipeline))
            return
        running = payload == ON
        assert self._control is not None
        self._control(pipeline, running)
        self._running[pipeline] = running
        logger.info("pipeline %s: %s by command", pipeline, "resumed" if running else "paused")
        self._sink(self.topics.control(pipeline), payload)


def removal_messages(config: HomeAssistantConfig, device: str, topics: Topics,
                     pipelines: list[str]) -> list[str]:
    """Retained topics `ha-remove` clears: discovery first, then what the entities read."""
    ha = HaTopics(topics, config.prefix)
    out = [ha.discovery(object_id(device))]
    for name in pipelines:
        out += [ha.state(name), ha.snapshot(name), ha.control(name)]
    return out
