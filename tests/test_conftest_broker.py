"""The test broker itself: one clear error without mosquitto, and a port it can restart on."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from conftest import REPO, Broker, daemon_env
from ports import ephemeral_range, free_port


def test_missing_mosquitto_is_one_error_at_collection():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--collect-only",
         "tests/test_daemon_e2e.py"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env=daemon_env(EDGE_RUNTIME_TEST_MOSQUITTO="/nonexistent/mosquitto"))
    output = done.stdout + done.stderr
    assert done.returncode == 4, output  # pytest's usage error: nothing ran
    assert output.count("mosquitto is not installed") == 1, output
    assert "deploy/dev-setup.sh" in output


def test_server_ports_lie_outside_the_ephemeral_range():
    """The kernel never picks these as a client's source port, so a stopped server keeps its port."""
    ephemeral = ephemeral_range()
    ports = [free_port() for _ in range(200)]
    assert not [port for port in ports if port in ephemeral], ephemeral
    assert len(set(ports)) == len(ports)  # never the same port twice in one process


def test_the_kernel_picks_source_ports_from_the_ephemeral_range_only():
    """The premise of free_port: outgoing connections take their source port from that range."""
    ephemeral = ephemeral_range()
    with socket.create_server(("127.0.0.1", free_port())) as server:
        clients = [socket.create_connection(server.getsockname()) for _ in range(100)]
        try:
            assert all(client.getsockname()[1] in ephemeral for client in clients)
        finally:
            for client in clients:
                client.close()


def test_a_client_on_the_brokers_port_makes_its_restart_fail(tmp_path):
    """What CI hit: while the broker is down, a connection took its port, and restarting failed.

    A connection to the stopped broker's own port that is given that port as its source port
    connects to itself (TCP simultaneous open). The kernel only does so by chance, for a port
    in its ephemeral range; here it is forced by binding the client to the port first. (Closed,
    that connection still holds the port for a minute, in TIME_WAIT.)
    """
    broker = Broker(tmp_path)
    broker.start()
    broker.stop()
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", broker.port))
        thief.connect(("127.0.0.1", broker.port))
        with pytest.raises(AssertionError, match="Address already in use") as failed:
            broker.start()
    # The failure names what holds the port.
    port = broker.port
    assert f"127.0.0.1:{port} -> 127.0.0.1:{port} ESTABLISHED" in str(failed.value)
