"""Brokers that demand a password or TLS: the daemon connects with the config's credentials, and
keeps retrying (without dying) when the broker refuses it."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import Broker, digits_pipeline, wait_until, write_config


def secured_broker(tmp_path: Path, extra: str, anonymous: bool = False) -> Broker:
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir(exist_ok=True)
    broker = Broker(broker_dir, extra_config=extra, anonymous=anonymous)
    broker.start()
    return broker


def listen(broker: Broker, topic: str, **tls: str) -> tuple[mqtt.Client, list[bytes]]:
    got: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.username_pw_set("pi", "s3cret")
    if tls:
        client.tls_set(ca_certs=tls["ca"])
    client.on_connect = lambda c, *a: c.subscribe(topic, 1)
    client.on_message = lambda c, u, m: got.append(m.payload)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client, got


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), "pi", "s3cret"], check=True)
    return path


def test_password_authentication(tmp_path, password_file, start_daemon):
    broker = secured_broker(tmp_path, f"password_file {password_file}\n")
    try:
        (tmp_path / "mqtt-password").write_text("s3cret\n")
        client, got = listen(broker, "edge/test-pi/digits/result")
        config = write_config(tmp_path / "c.toml", broker, [digits_pipeline()],
                              mqtt_extra={"username": "pi", "password_file": "mqtt-password"})
        daemon = start_daemon(config)
        assert daemon.wait(60) == 0, daemon.log
        wait_until(lambda: len(got) == 20, 10)
        assert "s3cret" not in daemon.log
        client.loop_stop()
    finally:
        broker.stop()


def test_wrong_password_is_refused_and_retried_not_fatal(tmp_path, password_file, start_daemon):
    broker = secured_broker(tmp_path, f"password_file {password_file}\n")
    try:
        (tmp_path / "mqtt-password").write_text("wrong\n")
        config = write_config(tmp_path / "c.toml", broker, [digits_pipeline(loop=True, fps=10.0)],
                              mqtt_extra={"username": "pi", "password_file": "mqtt-password"})
        daemon = start_daemon(config)
        wait_until(lambda: daemon.log.count("refused the connection") >= 2, 30)
        assert daemon.process.poll() is None
        assert "wrong" not in daemon.log
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        broker.stop()


def make_certificates(folder: Path) -> dict[str, Path]:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt")
    return {name: folder / f"{name}" for name in ("ca.crt", "server.crt", "server.key")}


def test_tls_with_a_private_ca(tmp_path, password_file, start_daemon):
    certs = make_certificates(tmp_path)
    broker = secured_broker(
        tmp_path,
        f"cafile {certs['ca.crt']}\ncertfile {certs['server.crt']}\nkeyfile {certs['server.key']}\n"
        f"password_file {password_file}\n",
    )
    try:
        (tmp_path / "mqtt-password").write_text("s3cret\n")
        client, got = listen(broker, "edge/test-pi/digits/result", ca=str(certs["ca.crt"]))
        config = write_config(tmp_path / "c.toml", broker, [digits_pipeline()], mqtt_extra={
            "username": "pi", "password_file": "mqtt-password",
            "tls": {"ca_file": str(certs["ca.crt"])}})
        daemon = start_daemon(config)
        assert daemon.wait(60) == 0, daemon.log
        wait_until(lambda: len(got) == 20, 10)
        client.loop_stop()
    finally:
        broker.stop()


def test_tls_with_an_untrusted_certificate_keeps_retrying(tmp_path, start_daemon):
    certs = make_certificates(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    stranger = make_certificates(other)["ca.crt"]  # a CA that did not sign the server
    broker = secured_broker(
        tmp_path,
        f"cafile {certs['ca.crt']}\ncertfile {certs['server.crt']}\nkeyfile {certs['server.key']}\n",
        anonymous=True,
    )
    try:
        config = write_config(tmp_path / "c.toml", broker, [digits_pipeline(loop=True, fps=10.0)],
                              mqtt_extra={"tls": {"ca_file": str(stranger)}})
        daemon = start_daemon(config)
        wait_until(lambda: daemon.log.count("cannot reach broker") >= 2, 30)
        assert "CERTIFICATE_VERIFY_FAILED" in daemon.log or "certificate verify failed" in daemon.log
        assert daemon.process.poll() is None
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        broker.stop()
