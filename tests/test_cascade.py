"""Several models per pipeline: stages on detection crops, batching, escalation, and their config
errors, on real models (the trained shapes detector, the digits CNNs) and real interpreters."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest

import stage_batching
from conftest import (
    DIGITS_FLOAT,
    DIGITS_INT8,
    DIGITS_SAMPLES,
    daemon_env,
    edge_runtime,
    write_config,
)
from edge_runtime.config.cascade import CropConfig
from edge_runtime.app_config import load_config
from edge_runtime.config.typed import ConfigError
from edge_runtime.pipeline.assembly import PipelineParts, assemble
from edge_runtime.pipeline.cascade import CascadeStats
from edge_runtime.pipeline.crops import Region, crop_region, cut, to_frame_geometry
from edge_runtime.preprocessing.geometry import Geometry
from edge_runtime.sources.base import Frame
from test_detection_daemon import SCENES, SCHEMA, SHAPES_MODEL, draw_scenes, iou

TFLITE_PYTHON = os.environ.get("EDGE_RUNTIME_TFLITE_PYTHON", "")
BOX = {"xmin": 0.25, "ymin": 0.5, "xmax": 0.5, "ymax": 0.75}  # 25x10 px in a 100x40 frame


# -- crop geometry -----------------------------------------------------------------------------

def test_crop_margin_square_and_edges():
    assert crop_region(BOX, 100, 40, CropConfig(margin=0.0)) == Region(25, 20, 50, 30)
    assert crop_region(BOX, 100, 40, CropConfig(margin=0.2)) == Region(20, 18, 55, 32)
    # square: 25x25 around the center (37.5, 25), then clipped to the frame's 40 rows
    assert crop_region(BOX, 100, 40, CropConfig(margin=0.0, square=True)) == Region(25, 12, 50, 38)
    big = CropConfig(margin=1.0, square=True)  # 75x75: past the top and bottom edges
    assert crop_region(BOX, 100, 40, big) == Region(0, 0, 75, 40)
    padded = CropConfig(margin=1.0, square=True, edge="pad")
    assert crop_region(BOX, 100, 40, padded) == Region(0, -13, 75, 63)
    assert crop_region(BOX, 100, 40, CropConfig(min_size=11)) is None  # 10 px high


def test_cut_is_a_view_inside_and_a_padded_copy_across_the_edge():
    frame = np.arange(40 * 100 * 3, dtype=np.uint8).reshape(40, 100, 3)
    inside = cut(frame, Region(25, 20, 50, 30))
    assert inside.base is not None and np.shares_memory(inside, frame)
    across = cut(frame, Region(90, -5, 110, 10))
    assert across.shape == (15, 20, 3)
    assert not across[:5].any() and not across[:, 10:].any()
    np.testing.assert_array_equal(across[5:, :10], frame[0:10, 90:100])


def test_stage_geometry_maps_the_crop_back_to_the_frame():
    inner = Geometry(25, 10, 64, 64, 25 / 64, 10 / 64)  # the crop stretched into a 64x64 input
    geometry = to_frame_geometry(inner, Region(25, 20, 50, 30), 100, 40)
    assert geometry.to_frame(0.0, 0.0) == pytest.approx((0.25, 0.5))
    assert geometry.to_frame(1.0, 1.0) == pytest.approx((0.5, 0.75))


# -- stages through the daemon -------------------------------------------------------------------

SHAPE_STAGE = f"""
[[pipelines.stages]]
name = "shape"                 # the detector again, on a crop three times the box
[pipelines.stages.model]
path = "{SHAPES_MODEL}"
threads = 1
[pipelines.stages.crop]
margin = 1.0
square = true
edge = "pad"
"""

STAGES = SHAPE_STAGE + f"""
[[pipelines.stages]]
name = "digit"                 # a classifier, on squares only
on = ["square"]
max_per_frame = 2
[pipelines.stages.model]
path = "{DIGITS_FLOAT}"
threads = 1
[pipelines.stages.postprocess]
top_k = 2
"""


def shapes_config(tmp_path: Path, broker: Any, stages: str = STAGES, **extra: Any) -> Path:
    config = write_config(tmp_path / "config.toml", broker, [{
        "name": "shapes", "source": {"type": "images", "path": str(tmp_path / "scenes")},
        "model": {"path": str(SHAPES_MODEL), "threads": 1}, **extra}],
        stats={"interval": 1.0})
    config.write_text(config.read_text() + stages)
    return config


def test_stages_attach_their_task_fields_to_each_detection(tmp_path, mosquitto, subscribe,
                                                           start_daemon):
    truth = draw_scenes(tmp_path / "scenes")
    sub = subscribe("edge/test-pi/shapes/result", "edge/test-pi/stats")
    daemon = start_daemon(shapes_config(tmp_path, mosquitto))
    assert daemon.wait(60) == 0, daemon.log

    results = sub.json_on("edge/test-pi/shapes/result")
    assert len(results) == len(SCENES)
    squares = 0
    for result in results:
        jsonschema.validate(result, SCHEMA)
        label, box = truth[result["source"]["name"]]
        (detection,) = result["detections"]
        stages = detection["stages"]
        # the detector on the padded crop finds the same shape, mapped back to the frame
        (again,) = stages["shape"]["detections"]
        assert again["label"] == label
        got = tuple(again["box"][k] for k in ("xmin", "ymin", "xmax", "ymax"))
        assert iou(got, box) >= 0.6, (result["source"]["name"], got, box)
        assert set(again) >= {"index", "label", "score", "box"} and "stages" not in again
        if label == "square":
            squares += 1
            classes = stages["digit"]["classes"]
            assert len(classes) == 2 and classes[0]["score"] >= classes[1]["score"]
        else:
            assert "digit" not in stages  # `on` keeps the classifier off discs
        assert result["timing_ms"]["stages.shape"] > 0
        assert result["timing_ms"]["stages.digit"] >= 0
    stats = sub.json_on("edge/test-pi/stats")[-1]["pipelines"]["shapes"]
    healthy = {"failures": 0, "model_failures": 0, "reloads": 0, "state": "running"}
    assert stats["stages"] == {
        "shape": {"invocations": len(SCENES), "crops": len(SCENES), **healthy},
        "digit": {"invocations": squares, "crops": squares, **healthy}}
    assert squares == 4


def digit_of(parts: PipelineParts, image: np.ndarray) -> dict[str, Any]:
    """What the digits model says about an image when it is a pipeline's own input."""
    frame = Frame(image, 0)
    geometry = parts.model.fill_input(lambda out: parts.preprocess(frame, out))
    parts.model.invoke()
    return parts.postprocess([parts.model.output(0)], geometry)


def test_stage_result_is_what_a_pipeline_of_that_model_publishes(tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    app = load_config(shapes_config(tmp_path, None))
    parts = assemble(app.pipelines[0], app)
    digits = assemble(load_config(write_config(tmp_path / "digits.toml", None, [{
        "name": "d", "source": {"type": "images", "path": str(folder)},
        "model": {"path": str(DIGITS_FLOAT)}, "postprocess": {"top_k": 2}}])).pipelines[0], app)
    image = np.full((64, 96, 3), 60, np.uint8)
    cv2.rectangle(image, (10, 8), (39, 37), (230, 230, 20), -1)
    frame = Frame(image, 0)
    detection = {"label": "square", "score": 0.9,
                 "box": {"xmin": 10 / 96, "ymin": 8 / 64, "xmax": 40 / 96, "ymax": 38 / 64}}
    fields = {"detections": [detection]}
    parts.cascade.run_stages(frame, fields, {}, CascadeStats())
    region = crop_region(detection["box"], 96, 64, CropConfig())
    assert detection["stages"]["digit"] == digit_of(digits, cut(image, region))


# -- batching ------------------------------------------------------------------------------------

def check_batched_is_one_by_one(report: dict[str, Any]) -> None:
    """The shape stage batched (one invoke) gives what it gives crop by crop (stage_batching.py)."""
    assert report["capacity"] == {"batched": 8, "resizable": True,  # det_shapes resizes
                                  "one_by_one": 1, "digits": 1}  # digits: fixed batch of 1
    batched, one_by_one, few = report["batched"], report["one_by_one"], report["few"]
    assert (batched["invocations"], batched["crops"]) == (1, 6)
    assert (one_by_one["invocations"], one_by_one["crops"]) == (6, 6)
    for x, y in zip(batched["stages"], one_by_one["stages"]):
        got, want = x["shape"]["detections"], y["shape"]["detections"]
        assert [d["label"] for d in got] == [d["label"] for d in want] and got
        for d, e in zip(got, want):
            assert d["score"] == pytest.approx(e["score"], abs=1e-4)
            assert d["box"] == pytest.approx(e["box"], abs=1e-4)
    # a frame with fewer crops resizes the batch down, and back up for more
    assert few["batch"] == 2 and few["invocations"] == 2 and few["crops"] == 8
    assert few["stages"][0] == batched["stages"][0]


def test_batched_crops_give_the_one_by_one_results_in_one_invoke(tmp_path):
    report = stage_batching.report(tmp_path, "ai-edge-litert")
    assert report["runtime"].startswith("ai-edge-litert")
    check_batched_is_one_by_one(report)


@pytest.mark.skipif(not TFLITE_PYTHON or not Path(TFLITE_PYTHON).exists(),
                    reason="no tflite-runtime venv (deploy/run-tests.sh makes one on Python 3.11 "
                           "and sets EDGE_RUNTIME_TFLITE_PYTHON)")
def test_batched_crops_give_the_one_by_one_results_on_tflite_runtime(tmp_path):
    done = subprocess.run([TFLITE_PYTHON, str(Path(stage_batching.__file__)), str(tmp_path),
                           "tflite-runtime"], capture_output=True, text=True, timeout=120,
                          env=daemon_env())
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["runtime"] == "tflite-runtime 2.14.0"
    check_batched_is_one_by_one(report)


# -- escalation ----------------------------------------------------------------------------------

def digits_config(tmp_path: Path, broker: Any, below: float) -> Path:
    config = write_config(tmp_path / "config.toml", broker, [{
        "name": "digits", "source": {"type": "images", "path": str(DIGITS_SAMPLES)},
        "model": {"path": str(DIGITS_INT8), "threads": 1}}], stats={"interval": 1.0})
    config.write_text(config.read_text() + f"""
[pipelines.escalate]
below = {below}
[pipelines.escalate.model]
path = "{DIGITS_FLOAT}"
threads = 1
""")
    return config


def test_escalation_lets_the_bigger_model_answer_when_the_small_one_is_unsure(
        tmp_path, mosquitto, subscribe, start_daemon):
    samples = sorted(DIGITS_SAMPLES.iterdir())
    app = load_config(digits_config(tmp_path, None, 0.0))
    small = assemble(app.pipelines[0], app)
    big = small.cascade.escalation.parts
    tops = {p.name: digit_of(small, cv2.imread(str(p)))["classes"][0]["score"] for p in samples}
    below = float(np.median(sorted(tops.values())))  # about half the samples escalate
    unsure = {name for name, top in tops.items() if top < below}
    assert 0 < len(unsure) < len(samples)

    sub = subscribe("edge/test-pi/digits/result", "edge/test-pi/stats")
    daemon = start_daemon(digits_config(tmp_path, mosquitto, below))
    assert daemon.wait(60) == 0, daemon.log
    results = sub.json_on("edge/test-pi/digits/result")
    assert len(results) == len(samples)
    for result in results:
        jsonschema.validate(result, SCHEMA)
        name = result["source"]["name"]
        escalated = name in unsure
        assert result["escalated"] is escalated, name
        decider = big if escalated else small
        assert result["model"] == {"name": decider.model.name, "sha256": decider.model.sha256}
        want = digit_of(decider, cv2.imread(str(DIGITS_SAMPLES / name)))["classes"]
        assert [c["index"] for c in result["classes"]] == [c["index"] for c in want]
        assert ("escalation" in result["timing_ms"]) is escalated
    stats = sub.json_on("edge/test-pi/stats")[-1]["pipelines"]["digits"]
    assert stats["escalations"] == len(unsure) and stats["escalation_failures"] == 0


# -- config errors, as check reports them ----------------------------------------------------------

@pytest.mark.parametrize("stages,extra,message", [
    (STAGES.replace(f'path = "{DIGITS_FLOAT}"', 'path = "nowhere.tflite"'), {},
     "pipelines[0].stages[1].model.path: no such file"),
    (STAGES.replace("top_k = 2", "top_k = 0"), {},
     "pipelines[0].stages[1].postprocess.top_k: must be >= 1, got 0"),
    (STAGES.replace('on = ["square"]', 'on = ["triangle"]'), {},
     "pipelines[0].stages[1].on: unknown label 'triangle'"),
    (STAGES.replace("margin = 1.0", "margin = -1"), {},
     "pipelines[0].stages[0].crop.margin: must be >= 0.0, got -1"),
    (STAGES.replace('name = "digit"', 'name = "shape"'), {},
     "pipelines[0].stages[1].name: duplicate stage name 'shape'"),
    (STAGES.replace("max_per_frame = 2", "batch = 1"), {},
     "pipelines[0].stages[1].batch: expected true or false, got 1"),
    (STAGES.replace("max_per_frame = 2", "max_per_frame = 0"), {},
     "pipelines[0].stages[1].max_per_frame: must be an integer >= 1, got 0"),
    (STAGES.replace("[pipelines.stages.postprocess]\ntop_k = 2",
                    '[pipelines.stages.postprocess]\ntask = "detection"'), {},
     "pipelines[0].stages[1].postprocess: cannot tell the detection format"),
    (STAGES, {"postprocess": {"task": "raw"}},
     "pipelines[0].stages: stages run on detections; this pipeline's task is 'raw'"),
    (f'[pipelines.escalate]\nbelow = 0.5\n[pipelines.escalate.model]\npath = "{DIGITS_FLOAT}"\n',
     {}, "pipelines[0].escalate: escalation compares top scores; task 'detection' has none"),
])
def test_check_names_the_stage_key_at_fault(tmp_path, stages, extra, message):
    (tmp_path / "scenes").mkdir()
    config = shapes_config(tmp_path, None, stages, **extra)
    done = edge_runtime("check", "--config", str(config))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{config}: {message}" in done.stderr


def test_escalation_model_must_answer_the_same_task(tmp_path):
    config = digits_config(tmp_path, None, 0.5)
    config.write_text(config.read_text() + '[pipelines.escalate.postprocess]\ntask = "raw"\n')
    with pytest.raises(ConfigError, match=r"pipelines\[0\]\.escalate\.postprocess\.task: the "
                                          r"escalation model's task is 'raw'"):
        app = load_config(config)
        assemble(app.pipelines[0], app)


def test_schema_checks_stage_fields_like_a_pipeline_result():
    result = {"schema": 1, "device": "d", "pipeline": "p", "seq": 0, "ts": "2026-01-01T00:00:00.000Z",
              "source": {"frame": 0}, "model": {"name": "m", "sha256": "0" * 64},
              "timing_ms": {"stages.emotion": 1.5}, "escalated": False,
              "detections": [{"index": 0, "label": "face", "score": 0.9,
                              "box": {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1},
                              "stages": {"emotion": {"classes": [
                                  {"index": 3, "label": "happy", "score": 0.97}]}}}]}
    jsonschema.validate(result, SCHEMA)
    bad_class = json.loads(json.dumps(result))
    bad_class["detections"][0]["stages"]["emotion"]["classes"][0]["index"] = -1
    bad_box = json.loads(json.dumps(result))
    bad_box["detections"][0]["stages"]["emotion"] = {"detections": [{"index": 0, "label": "x",
                                                                     "score": 1, "box": {}}]}
    bad_flag = dict(result, escalated="yes")
    for bad in (bad_class, bad_box, bad_flag):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


def test_check_lists_each_secondary_model(tmp_path):
    draw_scenes(tmp_path / "scenes")  # check opens the images source: it needs images
    done = edge_runtime("check", "--config", str(shapes_config(tmp_path, None)))
    assert done.returncode == 0, done.stderr
    assert "  stage shape: det_shapes.tflite (" in done.stdout
    assert "task detection), up to 8 crops per invoke" in done.stdout
    assert "  stage digit on square: digits_float.tflite (" in done.stdout
    assert "task classification), one crop per invoke" in done.stdout
    done = edge_runtime("check", "--config", str(digits_config(tmp_path, None, 0.5)))
    assert "  escalate below 0.5: digits_float.tflite (" in done.stdout, done.stdout
    unbatched = STAGES.replace('name = "shape"', 'name = "shape"\nbatch = false')
    done = edge_runtime("check", "--config", str(shapes_config(tmp_path, None, unbatched)))
    assert "  stage shape: det_shapes.tflite (" in done.stdout, done.stderr
    assert "task detection), one crop per invoke" in done.stdout


def test_a_stage_of_the_same_name_in_another_pipeline_does_not_mute_its_warnings(
        tmp_path, monkeypatch, caplog):
    """Each stage limits its own warnings: two pipelines with a stage called "digit" whose models
    both fail each log theirs (a limiter shared by the module let the first mute the second for
    ten seconds)."""
    from edge_runtime.supervision.fault_injection import FAIL_INVOKE_ENV

    (tmp_path / "scenes").mkdir()
    fault = tmp_path / "fault"
    fault.touch()
    monkeypatch.setenv(FAIL_INVOKE_ENV, f"shapes.digit={fault}")
    app = load_config(shapes_config(tmp_path, None))
    stages = [next(s for s in assemble(app.pipelines[0], app).cascade.stages if s.name == "digit")
              for _ in range(2)]
    image = np.full((64, 96, 3), 60, np.uint8)
    box = {"xmin": 10 / 96, "ymin": 8 / 64, "xmax": 40 / 96, "ymax": 38 / 64}
    caplog.set_level("WARNING", logger="edge_runtime.pipeline.cascade")
    for stage in stages:
        stage.health = None  # a failure is logged right away, no reload
        detection = {"label": "square", "score": 0.9, "box": dict(box)}
        stage.run(Frame(image, 0), [detection], CascadeStats().stage("digit"))
        assert "error" in detection["stages"]["digit"], detection
    warned = [r for r in caplog.records if "stage digit: no result" in r.getMessage()]
    assert len(warned) == 2, caplog.text
