"""The serial source through real pseudo-terminal pairs: garbage, partial lines, a vanishing port.

The port is a symlink to a pty's slave, as /dev/serial/by-id/... is to /dev/ttyUSB0: unplugging
closes the master (reads fail with EIO) and removes the link; replugging makes a new pty and
points the link at it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("serial")

from edge_runtime.sources.base import SourceContext, SourceError  # noqa: E402
from edge_runtime.sources.serial_source import SerialOptions, SerialSource  # noqa: E402


class FakeDevice:
    """A microcontroller on a USB serial port that can be unplugged and plugged back."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master: int | None = None
        self.plug()

    def plug(self) -> None:
        self.master, slave = os.openpty()
        name = os.ttyname(slave)
        os.close(slave)
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(name)

    def unplug(self) -> None:
        self.link.unlink(missing_ok=True)
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def write(self, data: bytes) -> None:
        assert self.master is not None
        os.write(self.master, data)


def serial_source(port: Path, **options) -> SerialSource:
    opts = SerialOptions(type="serial", port=str(port), baud=9600, columns=("ax", "ay"),
                         window=3, **options)
    return SerialSource(opts, SourceContext(base_dir=port.parent, pipeline="uart"))


def next_frame(src: SerialSource, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = src.read()
        if frame is not None:
            return frame
    raise AssertionError("no window within the timeout")


@pytest.fixture
def device(tmp_path):
    dev = FakeDevice(tmp_path / "ttyUSB-sensor")
    yield dev
    dev.unplug()


def test_garbage_and_partial_lines_are_skipped_and_windows_keep_good_rows(device):
    src = serial_source(device.link)
    src.open()
    try:
        device.write(b"\x00\xff\xfe\r\nboot v1.2\r\nay,ax\r\n1,")  # noise, banner, header, half a line
        time.sleep(0.1)
        assert src.read() is None  # nothing complete yet
        device.write(b"2\r\n3,4\r\ngarbage,here\r\n{\"ax\": 50, \"ay\": 60}\r\n")
        frame = next_frame(src)
        # the header said ay comes first: rows are (ax, ay)
        np.testing.assert_array_equal(frame.data, [[2, 1], [4, 3], [50, 60]])
        assert src.input_errors() == 3  # the noise line, the banner, garbage,here
    finally:
        src.close()


def test_a_burst_hands_on_only_the_newest_window(device):
    src = serial_source(device.link)
    src.open()
    try:
        device.write(b"".join(b"%d,%d\n" % (i, -i) for i in range(10)))
        time.sleep(0.2)
        frame = next_frame(src)
        np.testing.assert_array_equal(frame.data[:, 0], [7, 8, 9])
        assert src.replaced == 7
    finally:
        src.close()


def test_unplug_fails_the_read_reopen_waits_for_the_device_and_a_cut_line_is_dropped(device):
    src = serial_source(device.link)
    src.open()
    try:
        device.write(b"1,1\n2,2\n3,3\n")
        next_frame(src)
        device.write(b"99,")  # the line the unplug cuts in half
        time.sleep(0.1)
        device.unplug()
        with pytest.raises(SourceError, match="failed"):
            for _ in range(20):
                src.read()
        src.close()
        with pytest.raises(SourceError, match="cannot open serial port"):
            src.open()  # still unplugged: the pipeline retries with backoff
        device.plug()
        src.open()
        device.write(b"5,5\n6,6\n7,7\n")
        frame = next_frame(src)
        np.testing.assert_array_equal(frame.data[:, 0], [5, 6, 7])  # nothing from before
    finally:
        src.close()


def test_a_silent_port_is_reopened_after_read_timeout(device):
    src = serial_source(device.link, read_timeout=1.0)
    src.open()
    try:
        started = time.monotonic()
        with pytest.raises(SourceError, match="sent nothing for 1s"):
            while time.monotonic() - started < 10:
                src.read()
    finally:
        src.close()
