"""`edge-runtime bench`: latency per thread count, runtime and delegate named; bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DIGITS_INT8, edge_runtime
from edge_runtime.bench import ThreadSpecError, parse_threads


def test_thread_specs() -> None:
    assert parse_threads("2") == [2]
    assert parse_threads("1..4") == [1, 2, 3, 4]
    assert parse_threads("4,1,2,2") == [1, 2, 4]
    for bad in ("0", "x", "3..1", "1..x", ""):
        with pytest.raises(ThreadSpecError):
            parse_threads(bad)


def test_bench_prints_latency_per_thread_count() -> None:
    result = edge_runtime("bench", str(DIGITS_INT8), "--threads", "1..2", "--runs", "5")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "runtime:  ai-edge-litert" in out or "runtime:  tflite-runtime" in out
    assert "delegate: cpu" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "2"]
    for row in rows:
        p50, p99 = float(row[1]), float(row[2])
        assert 0 < p50 <= p99


def test_bench_json_names_the_fallback_delegate() -> None:
    result = edge_runtime("bench", str(DIGITS_INT8), "--threads", "1", "--runs", "3", "--json",
                          "--delegate", "edgetpu")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["delegate"] == "cpu (edgetpu unavailable)"
    assert report["runs"] == 3
    assert [r["threads"] for r in report["results"]] == [1]
    assert report["results"][0]["per_second"] > 0


@pytest.mark.parametrize("args, message", [
    (["--threads", "0"], "thread counts start at 1"),
    (["--runs", "0"], "--runs must be at least 1"),
])
def test_bench_rejects_bad_options(args: list[str], message: str) -> None:
    result = edge_runtime("bench", str(DIGITS_INT8), *args)
    assert result.returncode == 2 and message in result.stderr


def test_bench_on_a_file_that_is_no_model(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\0" * 64)
    result = edge_runtime("bench", str(junk), "--threads", "1", "--runs", "1")
    assert result.returncode == 2
    assert "junk.tflite" in result.stderr
