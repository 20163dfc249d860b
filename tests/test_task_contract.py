"""The task contract: each task plugin says its payload field, its part of the result schema, what
`change` publishing compares and its Home Assistant entities; the schemas are assembled from the
tasks, and the assembled result schema validates what real models make through each task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest

from conftest import DIGITS_INT8, DIGITS_SAMPLES, edge_runtime, write_config
from edge_runtime.app_config import load_config
from edge_runtime.payload_schemas import SCHEMAS_BY_MESSAGE, STAGE_ERROR, result_schema, state_schema
from edge_runtime.pipeline.assembly import PipelineParts, assemble
from edge_runtime.pipeline.result import result_body
from edge_runtime.postprocessing.registry import TASKS
from edge_runtime.postprocessing.task import EntityContext
from edge_runtime.sources.base import Frame

MODELS = Path(__file__).resolve().parent / "models"


def build(tmp_path: Path, model: Path, postprocess: dict[str, Any] | None = None) -> PipelineParts:
    pipeline: dict[str, Any] = {"name": "p", "model": {"path": str(model)},
                                "source": {"type": "images", "path": str(DIGITS_SAMPLES)}}
    if postprocess:
        pipeline["postprocess"] = postprocess
    app = load_config(write_config(tmp_path / "config.toml", None, [pipeline]))
    return assemble(app.pipelines[0], app)


def run(parts: PipelineParts, image: np.ndarray) -> dict[str, Any]:
    """A real result message for one image: preprocess, invoke, the task, the envelope."""
    frame = Frame(image, 7, "frame.png")
    geometry = parts.model.fill_input(lambda out: parts.preprocess(frame, out))
    parts.model.invoke()
    fields = parts.postprocess([parts.model.output(i) for i in range(len(parts.model.outputs))],
                               geometry)
    body = result_body("pi", "p", frame, True, {"name": parts.model.name,
                                                "sha256": parts.model.sha256}, {"invoke": 1.0},
                       fields)
    return {**body, "seq": 0}


def test_edge_runtime_schema_prints_what_the_tasks_assemble():
    """Consumers get the schemas from the CLI: nothing to regenerate when a task is added."""
    for message, make in SCHEMAS_BY_MESSAGE.items():
        done = edge_runtime("schema", message)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == make()
    assert "classes" in json.loads(edge_runtime("schema", "result").stdout)["$defs"]


def test_each_task_fills_its_own_field():
    fields = [task.field for task in TASKS.values()]
    assert len(set(fields)) == len(fields)
    schema = result_schema()
    assert set(schema["$defs"]["taskFields"]["properties"]) == set(fields) | set(STAGE_ERROR)
    assert {v["title"] for v in state_schema()["oneOf"]} == set(TASKS)


@pytest.mark.parametrize("task,model,postprocess", [
    ("classification", DIGITS_INT8, None),
    ("raw", DIGITS_INT8, {"task": "raw"}),
    ("detection", MODELS / "det_yolo_v8.tflite", {"task": "detection"}),
    ("detection", MODELS / "det_anchors.tflite", {"task": "detection"}),  # with keypoints
])
def test_the_assembled_schemas_validate_real_results_and_states(tmp_path, task, model, postprocess):
    parts = build(tmp_path, model, postprocess)
    assert parts.task == task and parts.task_plugin is TASKS[task]
    image = cv2.imread(str(sorted(DIGITS_SAMPLES.glob("*.png"))[0]))
    if task == "detection":
        image = np.full((48, 64, 3), 90, np.uint8)  # the constant-output models' test frame
    message = run(parts, image)
    value = message[parts.task_plugin.field]
    assert value, f"{task} made an empty {parts.task_plugin.field!r}: nothing was validated"
    result = result_schema()
    jsonschema.validate(message, result)
    _, state = parts.task_plugin.entity_state("t", message, EntityContext(("cat",), ("z",)))
    jsonschema.validate(state, state_schema())
    # ... and the schema can fail: the task's value with a wrong type is refused
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**message, parts.task_plugin.field: "not a result"}, result)


def test_change_is_refused_for_a_task_without_a_summary(tmp_path):
    from edge_runtime.config.typed import ConfigError

    pipeline = {"name": "p", "model": {"path": str(DIGITS_INT8)},
                "source": {"type": "images", "path": str(DIGITS_SAMPLES)},
                "postprocess": {"task": "raw"}, "publish": {"mode": "change"}}
    app = load_config(write_config(tmp_path / "c.toml", None, [pipeline]))
    with pytest.raises(ConfigError) as caught:
        assemble(app.pipelines[0], app)
    changing = [name for name, task in TASKS.items() if task.changes]
    assert "pipelines[0].publish.mode" in str(caught.value)
    assert " or ".join(changing) in str(caught.value) and "raw" not in changing


def test_discovery_entities_come_from_the_task():
    """Discovery makes one component per entity the task describes, and nothing task-specific."""
    from edge_runtime.homeassistant.discovery import HaTopics, PipelineInfo, discovery_payload
    from edge_runtime.messages.topics import Topics

    topics = HaTopics(Topics("edge", "pi"), "homeassistant")
    for name, task in TASKS.items():
        ctx = EntityContext(("cat", "dog"), ("porch",))
        described = task.ha_entities(ctx)
        cmps = discovery_payload("pi", topics, [PipelineInfo("p", name, ctx.labels, ctx.zones)],
                                 control=False)["cmps"]
        made = {k: v for k, v in cmps.items() if v.get("state_topic") == "edge/pi/p/state"}
        assert len(made) == len(described) >= 1, name
        assert sorted(v["value_template"] for v in made.values()) == \
            sorted(e.value_template for e in described), name
    assert json.dumps(result_schema())  # plain JSON


def test_escalation_asks_the_task_how_sure_a_result_is():
    classification = TASKS["classification"]
    assert classification.certainty({"classes": [{"index": 1, "label": "a", "score": 0.4}]}) == 0.4
    assert classification.certainty({"classes": []}) == 0.0  # nothing passed the threshold
    for name in ("raw", "detection"):
        assert TASKS[name].confidence is None
        with pytest.raises(ValueError):
            TASKS[name].certainty({TASKS[name].field: []})
