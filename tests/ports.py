"""Loopback ports for the servers the tests and benches start, and restart on the same port.

`bind(port 0)` hands out a port from the kernel's ephemeral range, the same range the kernel picks
the source port of every outgoing connection from. A server the tests stop and start again
(mosquitto in the outage tests, the RTSP and HTTP camera servers) then competes with every client
on the machine for its own port while it is down: a daemon reconnecting to it can even be given
that very port as its source port and connect to itself. Either way the restart fails with
"Address already in use" (CI failed that way once). Ports outside the ephemeral range are never
handed out on their own, so a stopped server's port stays free for it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 20000  # below: the ports of well-known services (HA 8123, MQTT 1883/8883, RTSP 8554)


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> range:
    """The ports the kernel picks from for port-0 binds and outgoing connections."""
    try:
        low, high = (int(field) for field in path.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return range(low, high + 1)


class PortPicker:
    """Hands out free loopback ports outside the ephemeral range, never the same one twice.

    It walks the allowed ports from a random start, so two servers of one test (or two test
    processes) do not pick the same port between one's check and the other's bind.
    """

    def __init__(self, ephemeral: range | None = None) -> None:
        ephemeral = ephemeral_range() if ephemeral is None else ephemeral
        self.allowed = [port for port in range(LOWEST, 65536) if port not in ephemeral]
        if not self.allowed:
            raise RuntimeError(f"the ephemeral range {ephemeral} leaves no port above {LOWEST}")
        self._next = random.SystemRandom().randrange(len(self.allowed))

    def __call__(self, attempts: int = 200) -> int:
        for _ in range(attempts):
            port = self.allowed[self._next % len(self.allowed)]
            self._next += 1
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
        raise RuntimeError(f"no free loopback port among {attempts} tried")


free_port = PortPicker()


TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


def sockets_on(port: int, table: Path = Path("/proc/net/tcp")) -> list[str]:
    """Every IPv4 TCP socket on this machine bound to `port`: what holds it when a bind fails."""
    found = []
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], int(fields[3], 16)
        if int(local.split(":")[1], 16) == port:
            found.append(f"{_address(local)} -> {_address(remote)} {TCP_STATES.get(state, state)}"
                         f" (uid {fields[7]})")
    return found


def _address(entry: str) -> str:
    """'0100007F:DF1B' (little-endian IPv4, hex port) as '127.0.0.1:57115'."""
    address, port = entry.split(":")
    return f"{socket.inet_ntoa(bytes.fromhex(address)[::-1])}:{int(port, 16)}"
