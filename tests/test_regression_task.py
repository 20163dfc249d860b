"""The `regression` task plugin, added as one module plus one registry line: named values from a
real model, its options checked with the key path, its part of the assembled result schema, its
Home Assistant sensors, `change` refused, and a daemon publishing its results over a real broker."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest

from conftest import DIGITS_FLOAT, DIGITS_SAMPLES, edge_runtime, wait_until, write_config
from edge_runtime.app_config import load_config
from edge_runtime.config.typed import ConfigError
from edge_runtime.homeassistant.discovery import HaTopics, PipelineInfo, discovery_payload
from edge_runtime.messages.topics import Topics
from edge_runtime.model.tflite_model import TensorSpec
from edge_runtime.payload_schemas import result_schema, state_schema
from edge_runtime.pipeline.assembly import PipelineParts, assemble
from edge_runtime.pipeline.result import result_body
from edge_runtime.postprocessing.base import TaskContext
from edge_runtime.postprocessing.regression import Regression, RegressionOptions
from edge_runtime.postprocessing.task import EntityContext
from edge_runtime.sources.base import Frame

SAMPLE = sorted(DIGITS_SAMPLES.glob("*.png"))[0]


def pipeline(postprocess: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "level", "source": {"type": "images", "path": str(DIGITS_SAMPLES)},
            "model": {"path": str(DIGITS_FLOAT), "threads": 1}, "postprocess": postprocess,
            **extra}


def build(tmp_path: Path, postprocess: dict[str, Any]) -> PipelineParts:
    app = load_config(write_config(tmp_path / "c.toml", None, [pipeline(postprocess)]))
    return assemble(app.pipelines[0], app)


def infer(parts: PipelineParts) -> dict[str, Any]:
    frame = Frame(cv2.imread(str(SAMPLE)), 0, SAMPLE.name)
    geometry = parts.model.fill_input(lambda out: parts.preprocess(frame, out))
    parts.model.invoke()
    outputs = [parts.model.output(i) for i in range(len(parts.model.outputs))]
    return parts.postprocess(outputs, geometry)


def test_values_are_the_outputs_in_order_under_their_names(tmp_path):
    """Cross-checked with the classification task on the same model and image: the value named
    by each label is that class's score."""
    values = infer(build(tmp_path, {"task": "regression"}))["values"]
    classes = infer(build(tmp_path, {"task": "classification", "top_k": 10}))["classes"]
    assert list(values) == [str(i) for i in range(10)]  # default names: the model's labels
    assert {c["label"]: c["score"] for c in classes} == values
    named = infer(build(tmp_path, {"task": "regression",
                                   "names": [f"level{i}" for i in range(10)]}))["values"]
    assert list(named.values()) == list(values.values()) and "level9" in named


@pytest.mark.parametrize("names,message", [
    (["a", "b", "c"], "names: 3 names for 10 output values ('StatefulPartitionedCall_1:0' [1, 10])"),
    (["a"] * 10, "names: each value needs its own non-empty name ('a')"),
])
def test_bad_names_are_config_errors_with_the_key(tmp_path, names, message):
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, {"task": "regression", "names": names})
    assert f"pipelines[0].postprocess: {message}" in str(caught.value)


def test_non_finite_values_are_null_and_still_valid():
    spec = TensorSpec("out", 0, (1, 3), np.dtype(np.float32), 0.0, 0)
    task = Regression(RegressionOptions(), TaskContext((spec,), ()))
    values = task([np.array([[1.5, np.nan, np.inf]], np.float32)], None)["values"]
    assert values == {"value0": 1.5, "value1": None, "value2": None}
    jsonschema.validate(values, result_schema()["$defs"]["values"])
    assert Regression(RegressionOptions(), TaskContext((TensorSpec(
        "y", 0, (1, 1), np.dtype(np.float32), 0.0, 0),), ())).names == ("value",)


def test_the_assembled_schemas_and_home_assistant_know_the_new_task(tmp_path):
    parts = build(tmp_path, {"task": "regression", "names": [f"v{i}" for i in range(10)]})
    fields = infer(parts)
    frame = Frame(np.zeros((8, 8, 3), np.uint8), 0)
    message = {**result_body("pi", "level", frame, True, {"name": "m", "sha256": "0" * 64}, {},
                             fields), "seq": 0}
    jsonschema.validate(message, result_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**message, "values": {"v0": "high"}}, result_schema())
    ctx = EntityContext(parts.postprocess.entity_labels(3), ())
    assert ctx.labels == tuple(f"v{i}" for i in range(10))  # configured names: all of them
    _, state = parts.task_plugin.entity_state("t", fields, ctx)
    jsonschema.validate(state, state_schema())
    cmps = discovery_payload("pi", HaTopics(Topics("edge", "pi"), "homeassistant"),
                             [PipelineInfo("level", "regression", ctx.labels)],
                             control=False)["cmps"]
    sensor = cmps["level_value_v3"]
    assert sensor["p"] == "sensor" and sensor["state_topic"] == "edge/pi/level/state"
    assert sensor["value_template"] == "{{ value_json['values']['v3'] }}"
    unnamed = build(tmp_path, {"task": "regression"})
    assert unnamed.postprocess.entity_labels(3) == ("0", "1", "2")  # the max_labels cap


def test_change_mode_is_refused(tmp_path):
    config = write_config(tmp_path / "c.toml", None, [pipeline(
        {"task": "regression"}, publish={"mode": "change"})])
    done = edge_runtime("check", "--config", str(config))
    assert done.returncode == 2
    assert "pipelines[0].publish.mode: 'change' compares labels; task 'regression'" in done.stderr


def test_the_daemon_publishes_regression_results(tmp_path, mosquitto, subscribe, start_daemon):
    sub = subscribe("edge/test-pi/level/result")
    config = write_config(tmp_path / "c.toml", mosquitto, [pipeline(
        {"task": "regression", "names": [f"level{i}" for i in range(10)]})])
    daemon = start_daemon(config)
    assert daemon.wait(60) == 0  # a file source: the daemon ends when every image is published
    results = wait_until(lambda: sub.json_on("edge/test-pi/level/result"), 30)
    assert len(results) == len(list(DIGITS_SAMPLES.glob("*.png")))
    for result in results:
        jsonschema.validate(result, result_schema())
        values = result["values"]
        assert list(values) == [f"level{i}" for i in range(10)]
        assert math.isclose(sum(values.values()), 1.0, abs_tol=1e-3)  # the model's softmax
