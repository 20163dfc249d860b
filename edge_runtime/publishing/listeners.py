"""What other parts of the daemon may do on the broker connection besides publishing results.

A `LinkListener` (Home Assistant discovery and control, homeassistant/service.py) is told about
every new connection with a `Link`, through which it subscribes, and receives the messages of its
subscriptions. Both calls run on the `mqtt-network` thread, so a listener must return quickly
and hand work elsewhere (it typically puts latest values). paho stays inside transport/mqtt.py.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Protocol

logger = logging.getLogger(__name__)


class Link:
    """One broker connection, as a listener sees it (network thread only)."""

    def __init__(self, client: Any, on_suback: dict[int, Callable[[], None]]) -> None:
        self._client = client
        self._on_suback = on_suback

    def subscribe(self, topics: list[str], done: Callable[[], None] | None = None) -> None:
        """QoS 1 subscriptions; `done` runs when the broker has acknowledged them. A broker
        sends the retained messages of earlier subscriptions of a connection before it
        acknowledges a later one."""
        if not topics:
            if done:
                done()
            return
        _, mid = self._client.subscribe([(topic, 1) for topic in topics])
        if done is not None and mid is not None:
            self._on_suback[mid] = done

    def unsubscribe(self, topics: list[str]) -> None:
        if topics:
            self._client.unsubscribe(topics)


class LinkListener(Protocol):
    def on_connect(self, link: Link) -> None: ...

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None: ...


def dispatch(listeners: list[LinkListener], call: Callable[[LinkListener], None]) -> None:
    """Call every listener; one that fails is logged and never breaks the connection."""
    for listener in listeners:
        try:
            call(listener)
        except Exception:  # noqa: BLE001 - the network thread must survive a listener's bug
            logger.exception("MQTT listener %s failed", type(listener).__name__)
