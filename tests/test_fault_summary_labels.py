"""The shutdown summary names each count; blank labels are warned about (issue 12, scenario 8).

The summary used to print `0 dropped` after the outbox had dropped most results (it counted stale
live frames); labels files with blank lines published the label "" without a word.
"""

from __future__ import annotations

import re
import signal

from conftest import DIGITS_INT8, digits_pipeline, edge_runtime, wait_until, write_config


def test_the_summary_counts_what_the_outbox_dropped(tmp_path, start_daemon):
    # No broker at all: every result stays in a 5-result outbox, 15 of 20 are dropped.
    config = write_config(tmp_path / "c.toml", None, [digits_pipeline()],
                          outbox={"max_messages": 5})
    daemon = start_daemon(config)
    wait_until(lambda: "every source is finished" in daemon.log, 60)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log
    line = re.search(r"pipeline digits: \d+ frames.*", daemon.log)
    assert line, daemon.log
    assert "20 frames, 20 results" in line[0], line[0]
    assert "0 stale frames skipped" in line[0], line[0]
    assert "15 results dropped (full), 5 waiting" in line[0], line[0]


def test_blank_labels_are_warned_about_at_start(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("zero\none\n\nthree\nfour\nfive\nsix\nseven\neight\nnine\n")
    pipeline = {**digits_pipeline(model=DIGITS_INT8), "postprocess": {"labels": str(labels)}}
    done = edge_runtime("check", "--config", str(write_config(tmp_path / "c.toml", None,
                                                                [pipeline])))
    assert done.returncode == 0, done.stderr
    assert "pipelines[0].postprocess.labels" in done.stderr, done.stderr
    assert "1 blank label(s), class index 2" in done.stderr, done.stderr


def test_full_labels_give_no_warning(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"d{i}\n" for i in range(10)))
    pipeline = {**digits_pipeline(model=DIGITS_INT8), "postprocess": {"labels": str(labels)}}
    done = edge_runtime("check", "--config", str(write_config(tmp_path / "c.toml", None,
                                                                [pipeline])))
    assert done.returncode == 0, done.stderr
    assert "blank label" not in done.stderr
