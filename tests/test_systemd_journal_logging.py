"""Logging for journald: priority prefix, no timestamp, one line per event."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from edge_runtime.logging_setup import configure_logging, parse_level, stream_is_journal, syslog_priority


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[IO[str]]:
    root = logging.getLogger()
    level = root.level
    with open(tmp_path / "stderr.log", "w+", encoding="utf-8") as stream:
        yield stream
    root.setLevel(level)
    for handler in [h for h in root.handlers if type(h).__name__ == "_EdgeRuntimeHandler"]:
        root.removeHandler(handler)


def _journal_env(stream: IO[str]) -> dict[str, str]:
    st = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def _emit_and_read(stream: IO[str]) -> list[str]:
    log = logging.getLogger("edge_runtime.test")
    log.info("model loaded: %s", "digits")
    log.debug("hidden at info")
    try:
        raise ValueError("bad tensor")
    except ValueError:
        log.exception("inference failed")
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def test_journal_stream_gets_priority_prefix_and_one_line_per_event(log_file: IO[str]) -> None:
    configure_logging("info", stream=log_file, environ=_journal_env(log_file))
    lines = _emit_and_read(log_file)
    assert lines[0] == "<6>edge_runtime.test: model loaded: digits"
    assert len(lines) == 2  # debug filtered, the traceback folded into its record's line
    assert lines[1].startswith("<3>edge_runtime.test: inference failed\\nTraceback")
    assert "ValueError: bad tensor" in lines[1]


def test_terminal_gets_timestamps(log_file: IO[str]) -> None:
    configure_logging("debug", stream=log_file, environ={})
    lines = _emit_and_read(log_file)
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.match(stamp + r" INFO    edge_runtime.test: model loaded: digits$", lines[0])
    assert "hidden at info" in lines[1]
    assert "Traceback (most recent call last):" in lines  # multi-line is fine on a terminal


def test_inherited_journal_stream_for_another_file_is_ignored(log_file: IO[str], tmp_path: Path) -> None:
    with open(tmp_path / "other", "w", encoding="utf-8") as other:
        assert not stream_is_journal(log_file, _journal_env(other))
    assert stream_is_journal(log_file, _journal_env(log_file))
    assert not stream_is_journal(log_file, {"JOURNAL_STREAM": "garbage"})


def test_second_call_replaces_its_own_handler_only(log_file: IO[str]) -> None:
    other = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(other)
    try:
        configure_logging("info", stream=log_file, environ={})
        configure_logging("warning", stream=log_file, environ={})
        ours = [h for h in root.handlers if type(h).__name__ == "_EdgeRuntimeHandler"]
        assert len(ours) == 1 and other in root.handlers
        assert root.level == logging.WARNING
    finally:
        root.removeHandler(other)


def test_levels() -> None:
    assert [syslog_priority(n) for n in (50, 40, 30, 20, 10)] == [2, 3, 4, 6, 7]
    assert parse_level("Debug") == logging.DEBUG and parse_level(25) == 25
    with pytest.raises(ValueError, match="unknown log level"):
        parse_level("verbose")
