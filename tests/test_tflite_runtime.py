"""The same daemon, the same code path, on tflite-runtime 2.14 (its own venv: it needs numpy<2)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import DIGITS_INT8, REPO, daemon_env, digits_pipeline, wait_until, write_config

TFLITE_PYTHON = os.environ.get("EDGE_RUNTIME_TFLITE_PYTHON", "")

pytestmark = pytest.mark.skipif(
    not TFLITE_PYTHON or not Path(TFLITE_PYTHON).exists(),
    reason="no tflite-runtime venv (deploy/run-tests.sh makes one on Python 3.11 and sets "
           "EDGE_RUNTIME_TFLITE_PYTHON)",
)


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([TFLITE_PYTHON, "-m", "edge_runtime", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO,
                          env=daemon_env(EDGE_RUNTIME_BACKEND="tflite-runtime"))


def test_info_names_tflite_runtime():
    done = run("info", str(DIGITS_INT8), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runtime"] == "tflite-runtime 2.14.0"


def test_daemon_classifies_on_tflite_runtime(tmp_path, mosquitto, subscribe):
    sub = subscribe("edge/test-pi/digits/result")
    config = write_config(tmp_path / "c.toml", mosquitto, [digits_pipeline()])
    done = run("run", "--config", str(config))
    assert done.returncode == 0, done.stderr
    wait_until(lambda: len(sub.on("edge/test-pi/digits/result")) >= 20, 10)
    results = sub.json_on("edge/test-pi/digits/result")
    assert len(results) == 20
    for result in results:
        digit = re.search(r"digit(\d)", result["source"]["name"]).group(1)
        assert result["classes"][0]["label"] == digit
