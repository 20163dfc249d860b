"""Publish a few messages and leave: for commands such as `edge-runtime ha-remove`."""

from __future__ import annotations

import time

from edge_runtime.config.schema import MqttConfig
from edge_runtime.transport.mqtt import connect, make_client


class OneShotError(RuntimeError):
    pass


def publish_retained(config: MqttConfig, client_id: str, messages: list[tuple[str, bytes]],
                     timeout: float = 10.0) -> None:
    """Publish each (topic, payload) retained at QoS 1 and wait for every PUBACK."""
    client = make_client(config, client_id)
    try:
        connect(client, config)
    except (OSError, ValueError) as exc:
        raise OneShotError(f"cannot reach broker {config.host}:{config.port} ({exc})") from None
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise OneShotError(f"broker {config.host}:{config.port} did not accept the "
                                   "connection")
            time.sleep(0.05)
        infos = [client.publish(topic, payload, qos=1, retain=True) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise OneShotError("the broker did not acknowledge every message")
    finally:
        client.disconnect()
        client.loop_stop()
