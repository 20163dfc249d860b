"""A slowly paced sensor source keeps the watchdog fed (issue 12, scenario 1).

A csv source at 4 rows per second with the vibration model's window takes many seconds to fill its
first window, longer than the watchdog's 3 s heartbeat age limit. The source must wait in slices
(Source.read returns within about half a second), so its heartbeat stays fresh and systemd keeps
hearing WATCHDOG=1 on a real notify socket.
"""

from __future__ import annotations

import signal
import time

import pytest

from conftest import VIBRATION_CSV, VIBRATION_MODEL, write_config
from test_notify_daemon import PING_INTERVAL, NotifyListener, ping, status

from edge_runtime.sources.base import SourceContext
from edge_runtime.sources.csv_source import CsvOptions, CsvSource


@pytest.fixture
def listener():
    lis = NotifyListener()
    yield lis
    lis.close()


def slow_csv(name: str, rate: float, window: int = 0) -> dict:
    source = {"type": "csv", "path": str(VIBRATION_CSV), "rate": rate, "loop": True}
    if window:
        source["window"] = window
    return {"name": name, "source": source, "model": {"path": str(VIBRATION_MODEL), "threads": 1}}


def test_a_window_slower_than_the_watchdog_keeps_pings_going(tmp_path, mosquitto, start_daemon,
                                                             listener):
    config = write_config(tmp_path / "c.toml", mosquitto, [slow_csv("slow", rate=4)])
    daemon = start_daemon(config, **listener.env())
    listener.context = lambda: daemon.log
    listener.receive_until(lambda f: "READY=1" in f, 60)
    later = listener.collect(8 * PING_INTERVAL)  # 12 s: the first window is not full yet
    assert sum(ping(f) for f in later) >= 5, later
    assert not any(status(f).startswith("stuck") for f in later), later
    assert "withholding watchdog pings" not in daemon.log
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log


def test_a_paced_read_returns_within_a_slice_and_loses_no_row(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text("a\n" + "".join(f"{i}\n" for i in range(6)))
    source = CsvSource(CsvOptions(type="csv", path=str(csv), columns=("a",), window=3, rate=2.0),
                       SourceContext(base_dir=tmp_path, pipeline="p"))
    source.open()
    frames, longest = [], 0.0
    deadline = time.monotonic() + 10
    while len(frames) < 4 and time.monotonic() < deadline:
        t0 = time.monotonic()
        frame = source.read()
        longest = max(longest, time.monotonic() - t0)
        if frame is not None:
            frames.append(frame)
    assert longest < 0.75  # the Source contract: read() blocks for about half a second at most
    # every row is used once, in order: windows 0-2, 1-3, 2-4, 3-5
    assert [f.data[:, 0].tolist() for f in frames] == [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]]
