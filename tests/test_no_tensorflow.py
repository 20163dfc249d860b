"""The daemon never imports TensorFlow (nor torch or onnx), although TensorFlow is installed here.

TensorFlow is no runtime of the daemon (model/runtime.py: `tf.lite.Interpreter` is gone since
TensorFlow 2.20, so the old last-resort fallback could only fail). This runs the real daemon
(`python -m edge_runtime run`) on the bundled digits example with its own config file (only the
broker's port changed), under an import watcher placed first on `sys.meta_path`: every attempt
to import a watched module is written down, whether or not it succeeds, and `sys.modules` is
dumped at exit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (DIGITS_INT8, EXAMPLES, REPO, Broker, Subscriber, daemon_env, edge_runtime,
                      wait_until, write_config)
from edge_runtime.model.runtime import RuntimeUnavailable, select_runtime

FRAMEWORKS = ("tensorflow", "torch", "onnx", "onnxruntime")  # converter extras only

WATCHER = r'''
import atexit, importlib.abc, os, runpy, sys, traceback

record = os.environ["IMPORT_RECORD"]
watched = ("tensorflow", "torch", "onnx", "onnxruntime", "ai_edge_litert")


class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in watched:
            with open(record, "a") as out:
                out.write(f"IMPORT {name}\n" + "".join(traceback.format_stack(limit=8)))
        return None  # the normal finders go on: this only watches


sys.meta_path.insert(0, Watch())
atexit.register(lambda: open(record + ".modules", "w").write("\n".join(sorted(sys.modules))))
sys.argv = ["edge-runtime", "run", "--config", sys.argv[1]]
runpy.run_module("edge_runtime", run_name="__main__", alter_sys=True)
'''


def run_digits_watched(tmp_path: Path, mosquitto: Broker) -> tuple[str, list[str]]:
    """The daemon on the digits example under the watcher: (watched import attempts, the
    modules loaded at exit)."""
    example = EXAMPLES / "digits"
    for name in ("samples", "digits_int8.tflite"):  # the example's relative paths keep working
        (tmp_path / name).symlink_to(example / name)
    config = (example / "config.toml").read_text(encoding="utf-8")
    assert 'host = "localhost"' in config and "port = 1883" in config
    config = config.replace("port = 1883", f"port = {mosquitto.port}")
    (tmp_path / "config.toml").write_text(config, encoding="utf-8")
    record = tmp_path / "imports.txt"
    samples = len(list((example / "samples").iterdir()))
    results = Subscriber(mosquitto, ["edge/demo/digits/result"])
    try:
        run = subprocess.run(
            [sys.executable, "-c", WATCHER, str(tmp_path / "config.toml")], cwd=REPO,
            env=daemon_env(IMPORT_RECORD=str(record), EDGE_RUNTIME_BACKEND=""),
            capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        wait_until(lambda: len(results.on("edge/demo/digits/result")) >= samples, 10)
    finally:
        results.close()
    body = json.loads(results.on("edge/demo/digits/result")[0])
    assert body["classes"], body  # the model ran and answered
    return (record.read_text(encoding="utf-8"),
            (tmp_path / "imports.txt.modules").read_text(encoding="utf-8").split())


def test_the_daemon_on_the_digits_example_never_imports_tensorflow(
        tmp_path: Path, mosquitto: Broker) -> None:
    attempts, modules = run_digits_watched(tmp_path, mosquitto)
    # The watcher saw the daemon's imports: the runtime it did load is there.
    assert "IMPORT ai_edge_litert" in attempts and "ai_edge_litert" in modules
    # The converter-only frameworks: an attempt is written down even where one is not installed.
    for framework in FRAMEWORKS:
        assert f"IMPORT {framework}\n" not in attempts and f"IMPORT {framework}." not in attempts, \
            attempts
    assert [m for m in modules if m.split(".")[0] in FRAMEWORKS] == []


# Plugins the digits example (an `images` source, a classifier) does not name: the registries
# import a plugin's module only when a config asks for it (plugin_registry.py; memory, goal 5).
UNUSED_PLUGINS = (
    "edge_runtime.sources.video", "edge_runtime.sources.stream",
    "edge_runtime.sources.mqtt_source", "edge_runtime.sources.serial_source",
    "edge_runtime.sources.command_source", "edge_runtime.sources.csv_source",
    "edge_runtime.postprocessing.detection", "edge_runtime.postprocessing.regression",
)


def test_the_daemon_imports_only_the_plugins_its_config_names(
        tmp_path: Path, mosquitto: Broker) -> None:
    _, modules = run_digits_watched(tmp_path, mosquitto)
    # the ones it runs are loaded (the dump is real) ...
    assert {"edge_runtime.sources.images", "edge_runtime.postprocessing.classification"} \
        <= set(modules)
    # ... and no other source or task
    assert [m for m in modules if m.startswith(UNUSED_PLUGINS)] == []


def test_tensorflow_is_refused_as_a_runtime(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", None, [{
        "name": "digits", "source": {"type": "images", "path": str(EXAMPLES / "digits" / "samples")},
        "model": {"path": str(DIGITS_INT8), "runtime": "tensorflow"}}])
    done = edge_runtime("check", "--config", str(config))
    assert done.returncode != 0
    assert "pipelines[0].model.runtime" in done.stderr and "tflite-runtime" in done.stderr
    with pytest.raises(RuntimeUnavailable, match="unknown runtime 'tensorflow'"):
        select_runtime("tensorflow")
