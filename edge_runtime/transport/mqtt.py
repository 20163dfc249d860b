"""The MQTT transport: the one module that imports paho-mqtt.

Both directions build on it: publishing/ (the `mqtt-network` thread, `oneshot.py`) and the
`mqtt` source (sources/mqtt_source.py). It holds what a connection is made of, from the
`[mqtt]` section: client id, protocol (MQTT 3.1.1, clean session), paho's callback API version,
username and password file, TLS (CA, client certificate, `insecure`), the connect timeout, and
where and how to connect (host, port, keepalive).
The paho names the callers need (client and message types, result codes) are re-exported here,
so a paho upgrade is handled in one place.
"""

from __future__ import annotations

import ssl

import paho.mqtt.client as _paho

from edge_runtime.config.schema import MqttConfig

Client = _paho.Client
Message = _paho.MQTTMessage
MQTT_ERR_SUCCESS = _paho.MQTT_ERR_SUCCESS
error_string = _paho.error_string
CONNECT_TIMEOUT = 5.0  # seconds paho waits for the TCP/TLS connection to the broker


def read_password(config: MqttConfig) -> str | None:
    if config.password_file is None:
        return None
    return config.password_file.read_text(encoding="utf-8").strip()


def make_client(config: MqttConfig, client_id: str) -> Client:
    """A paho client configured from `[mqtt]`: auth, TLS, protocol; not yet connected."""
    client = _paho.Client(
        _paho.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=_paho.MQTTv311,
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
    client.connect_timeout = CONNECT_TIMEOUT
    return client


def connect(client: Client, config: MqttConfig) -> None:
    """Connect to the `[mqtt]` broker now; OSError or ValueError when it cannot be reached."""
    client.connect(config.host, config.port, config.keepalive)


def connect_async(client: Client, config: MqttConfig) -> None:
    """Connect once the client's own loop runs (`loop_forever` retries there by itself)."""
    client.connect_async(config.host, config.port, config.keepalive)
