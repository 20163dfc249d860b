"""Delegates: a missing library or a file that is no delegate falls back to the CPU, for real."""

from __future__ import annotations

import ctypes.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from conftest import DIGITS_INT8, DIGITS_SAMPLES, edge_runtime, write_config
from edge_runtime.model.delegates import (
    DelegateUnavailable,
    delegate_label,
    load_delegate,
    load_model,
)
from edge_runtime.model.runtime import select_runtime


def libc_path() -> str:
    """A real shared library that is certainly not a TFLite delegate."""
    for candidate in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6",
                      "/usr/lib/libc.so.6"):
        if Path(candidate).is_file():
            return candidate
    name = ctypes.util.find_library("c")
    assert name, "no libc found"
    return name


def works(model) -> None:
    """The fallback model really runs."""
    model.set_input(0, np.zeros(model.inputs[0].shape, model.inputs[0].dtype))
    model.invoke()
    assert model.output(0).size == 10


def test_no_delegate_is_cpu() -> None:
    loaded = load_model(DIGITS_INT8, select_runtime(), threads=1)
    assert loaded.delegate == "cpu"
    works(loaded.model)


def test_a_missing_edgetpu_library_falls_back_to_cpu_and_says_so(caplog) -> None:
    caplog.set_level(logging.WARNING)
    loaded = load_model(DIGITS_INT8, select_runtime(), threads=1, delegate="edgetpu")
    assert loaded.delegate == "cpu (edgetpu unavailable)"
    works(loaded.model)
    assert "delegate edgetpu unavailable" in caplog.text
    assert "libedgetpu.so.1" in caplog.text


def test_a_missing_library_path_falls_back(tmp_path: Path) -> None:
    missing = tmp_path / "libvendor_delegate.so"
    with pytest.raises(DelegateUnavailable, match="cannot load"):
        load_delegate(select_runtime(), str(missing))
    loaded = load_model(DIGITS_INT8, select_runtime(), delegate=str(missing))
    assert loaded.delegate == "cpu (libvendor_delegate.so unavailable)"
    works(loaded.model)


def test_a_real_library_that_is_not_a_delegate_falls_back() -> None:
    libc = libc_path()
    with pytest.raises(DelegateUnavailable, match="not a TFLite delegate"):
        load_delegate(select_runtime(), libc)
    loaded = load_model(DIGITS_INT8, select_runtime(), delegate=libc)
    assert loaded.delegate == f"cpu ({delegate_label(libc)} unavailable)"
    works(loaded.model)


def test_a_file_that_is_no_library_falls_back(tmp_path: Path) -> None:
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"not an ELF file")
    loaded = load_model(DIGITS_INT8, select_runtime(), delegate=str(fake))
    assert loaded.delegate == "cpu (libfake.so unavailable)"


def test_a_broken_model_still_fails_with_its_own_message(tmp_path: Path) -> None:
    from edge_runtime.model.tflite_model import ModelLoadError

    broken = tmp_path / "broken.tflite"
    broken.write_bytes(DIGITS_INT8.read_bytes()[:1000])
    with pytest.raises(ModelLoadError):
        load_model(broken, select_runtime(), delegate="edgetpu")


def test_check_and_info_report_the_fallback(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", None, [{
        "name": "tpu", "source": {"type": "images", "path": str(DIGITS_SAMPLES)},
        "model": {"path": str(DIGITS_INT8), "delegate": "edgetpu"}}])
    check = edge_runtime("check", "--config", str(config))
    assert check.returncode == 0, check.stderr
    assert "cpu (edgetpu unavailable)" in check.stdout
    assert "delegate edgetpu unavailable" in check.stderr
    info = edge_runtime("info", str(DIGITS_INT8), "--json", "--delegate", "edgetpu")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["delegate"] == "cpu (edgetpu unavailable)"


def test_the_daemon_runs_on_cpu_when_the_delegate_is_missing(tmp_path: Path, mosquitto, subscribe,
                                                             start_daemon) -> None:
    config = write_config(tmp_path / "c.toml", mosquitto, [{
        "name": "tpu", "source": {"type": "images", "path": str(DIGITS_SAMPLES)},
        "model": {"path": str(DIGITS_INT8), "threads": 1, "delegate": "edgetpu"}}])
    sub = subscribe("edge/test-pi/tpu/result", "edge/test-pi/stats")
    daemon = start_daemon(config)
    assert daemon.wait(60) == 0, daemon.log
    assert len(sub.on("edge/test-pi/tpu/result")) == 20
    assert "delegate edgetpu unavailable, running digits_int8.tflite on the CPU" in daemon.log
    stats = sub.json_on("edge/test-pi/stats")
    assert stats and stats[-1]["pipelines"]["tpu"]["delegate"] == "cpu (edgetpu unavailable)"
