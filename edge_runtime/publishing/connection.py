"""A paho-mqtt client configured from the [mqtt] section: auth, TLS, protocol."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt

from edge_runtime.config.schema import MqttConfig


def read_password(config: MqttConfig) -> str | None:
    if config.password_file is None:
        return None
    return config.password_file.read_text(encoding="utf-8").strip()


def make_client(config: MqttConfig, client_id: str) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    if config.username:
        client.username_pw_set(config.username, read_password(config))
    if config.tls is not None:
        tls = config.tls
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        if tls.insecure:
            client.tls_insecure_set(True)
    client.connect_timeout = 5.0
    return client
