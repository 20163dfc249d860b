"""Models that fail at run time, provoked for real at the model layer (supervision/
fault_injection.py rigs every model where it is loaded: at start, on each reload, stage and
escalation models alike): the pipeline's model, a stage's model and an escalation model each
raise in `invoke` while a file exists, and each recovers once the file is gone. Real daemon, real
broker, real interpreters."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conftest import DIGITS_FLOAT, digits_pipeline, wait_until, write_config
from edge_runtime.app_config import load_config
from edge_runtime.pipeline.assembly import assemble
from edge_runtime.supervision.fault_injection import (
    FAIL_INVOKE_ENV,
    STALL_INFERENCE_ENV,
    Faults,
    InjectedFault,
)
from test_cascade import SHAPE_STAGE as STAGE
from test_detection_daemon import SCHEMA, SHAPES_MODEL, draw_scenes
from test_notify_daemon import PING_INTERVAL, listener, ping, status  # noqa: F401 (fixture)

RETRY = {"model": {"min_delay": 0.1, "max_delay": 0.2}}  # reload attempts come quickly
STATS = "edge/test-pi/stats"


def stats_of(sub: Any, pipeline: str) -> dict[str, Any]:
    messages = sub.json_on(STATS)
    return messages[-1]["pipelines"].get(pipeline, {}) if messages else {}


def stop(daemon: Any) -> None:
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log


# -- the hook, where models are loaded -------------------------------------------------------------

def test_fault_env_rigs_the_named_model_at_every_load(tmp_path, monkeypatch):
    fault = tmp_path / "fault"
    config = write_config(tmp_path / "c.toml", None, [digits_pipeline(), digits_pipeline("other")])
    app = load_config(config)
    monkeypatch.setenv(FAIL_INVOKE_ENV, f"digits={fault}")
    rigged = [assemble(app.pipelines[0], app).model for _ in range(2)]  # start, reload
    spared = assemble(app.pipelines[1], app).model
    fault.touch()
    for model in rigged:
        with pytest.raises(InjectedFault, match=f"model digits fails while {fault} exists"):
            model.invoke()
    spared.invoke()
    fault.unlink()
    for model in rigged:
        model.invoke()  # the fault cleared: the same interpreter answers


def test_fault_env_parsing_names_models_and_skips_malformed_entries(caplog):
    faults = Faults.from_env({FAIL_INVOKE_ENV: "a=/x; b.escalate=/y;nonsense;=z",
                              STALL_INFERENCE_ENV: "c.stage"})
    assert faults.fail == {"a": Path("/x"), "b.escalate": Path("/y")}
    assert faults.stall == "c.stage"
    assert "'nonsense' is not <model>=<file>" in caplog.text
    assert Faults.from_env({}) == Faults()


# -- the pipeline's own model ----------------------------------------------------------------------

def test_a_fault_survives_the_pipelines_model_reload_and_clears(tmp_path, mosquitto, subscribe,
                                                                start_daemon):
    fault = tmp_path / "fault"
    fault.touch()
    sub = subscribe("edge/test-pi/digits/result", STATS)
    config = write_config(tmp_path / "c.toml", mosquitto,
                          [digits_pipeline(loop=True, fps=20.0)], stats={"interval": 1.0},
                          retry=RETRY)
    daemon = start_daemon(config, **{FAIL_INVOKE_ENV: f"digits={fault}"})
    # Each failure reloads the model from its file; the reloaded model is rigged again, so it
    # fails again (a hook installed once at start would be gone after the first reload).
    wait_until(lambda: stats_of(sub, "digits").get("failures", 0) >= 3, 30)
    assert daemon.log.count("model reloaded") >= 2, daemon.log
    assert sub.on("edge/test-pi/digits/result") == []
    fault.unlink()
    wait_until(lambda: len(sub.on("edge/test-pi/digits/result")) >= 5, 30)
    after = wait_until(lambda: (stats := stats_of(sub, "digits")).get("results") and stats, 10)
    assert after["state"] == "running"
    later = wait_until(lambda: (stats := stats_of(sub, "digits"))["results"] > after["results"]
                       and stats, 10)
    assert later["failures"] == after["failures"]  # no more failures once cleared
    stop(daemon)


# -- a stage's model ---------------------------------------------------------------------------------


def test_a_failing_stage_marks_its_detections_and_recovers_by_reload(tmp_path, mosquitto,
                                                                     subscribe, start_daemon):
    draw_scenes(tmp_path / "scenes")
    fault = tmp_path / "fault"
    fault.touch()
    sub = subscribe("edge/test-pi/shapes/result", STATS)
    config = write_config(tmp_path / "c.toml", mosquitto, [{
        "name": "shapes", "source": {"type": "images", "path": str(tmp_path / "scenes"),
                                     "loop": True, "fps": 20.0},
        "model": {"path": str(SHAPES_MODEL), "threads": 1}}],
        stats={"interval": 1.0}, retry=RETRY)
    config.write_text(config.read_text() + STAGE)
    daemon = start_daemon(config, **{FAIL_INVOKE_ENV: f"shapes.shape={fault}"})

    # The stage fails, is reloaded (rigged again: fails again), and the primary results flow.
    wait_until(lambda: stats_of(sub, "shapes").get("stages", {}).get("shape", {})
               .get("reloads", 0) >= 2, 30)
    faulted = sub.json_on("edge/test-pi/shapes/result")
    assert len(faulted) >= 5
    for result in faulted:
        jsonschema.validate(result, SCHEMA)
        (detection,) = result["detections"]  # the detector's own answer is there
        (error,) = detection["stages"]["shape"].values()
        assert detection["stages"]["shape"] == {"error": error}
        assert error.startswith("InjectedFault: ") and str(fault) in error
    counters = stats_of(sub, "shapes")["stages"]["shape"]
    assert counters["model_failures"] >= 3 and counters["invocations"] == 0
    assert counters["failures"] >= counters["model_failures"]
    warnings = daemon.log.count("stage shape: model failed")
    assert 1 <= warnings < counters["model_failures"], daemon.log  # rate-limited

    fault.unlink()
    seen = len(faulted)

    def recovered() -> list[dict[str, Any]]:
        return [r for r in sub.json_on("edge/test-pi/shapes/result")[seen:]
                if "detections" in r["detections"][0]["stages"]["shape"]]

    wait_until(lambda: len(recovered()) >= 3, 30)
    for result in recovered():
        jsonschema.validate(result, SCHEMA)
        (again,) = result["detections"][0]["stages"]["shape"]["detections"]
        assert again["label"] == result["detections"][0]["label"]
    wait_until(lambda: stats_of(sub, "shapes")["stages"]["shape"]["invocations"] > 0, 10)
    counters = stats_of(sub, "shapes")["stages"]["shape"]
    assert counters["state"] == "running"
    stop(daemon)
    assert stats_of(sub, "shapes")["results"] >= seen + 3


# -- an escalation model ---------------------------------------------------------------------------

def test_a_failing_escalation_model_leaves_the_small_answer_and_recovers(tmp_path, mosquitto,
                                                                        subscribe, start_daemon):
    fault = tmp_path / "fault"
    fault.touch()
    sub = subscribe("edge/test-pi/digits/result", STATS)
    config = write_config(tmp_path / "c.toml", mosquitto, [digits_pipeline(loop=True, fps=20.0)],
                          stats={"interval": 1.0}, retry=RETRY)
    config.write_text(config.read_text() + f"""
[pipelines.escalate]
below = 1.0                    # every result of the int8 model (top score < 1) escalates
[pipelines.escalate.model]
path = "{DIGITS_FLOAT}"
threads = 1
""")
    daemon = start_daemon(config, **{FAIL_INVOKE_ENV: f"digits.escalate={fault}"})
    wait_until(lambda: stats_of(sub, "digits").get("escalation_reloads", 0) >= 2, 30)
    faulted = sub.json_on("edge/test-pi/digits/result")
    assert len(faulted) >= 5
    for result in faulted:
        jsonschema.validate(result, SCHEMA)
        assert result["escalated"] is False
        assert result["model"]["name"] == "digits_int8"  # the small model answered
        assert result["escalation_error"].startswith("InjectedFault: ")
        assert result["classes"]
    stats = stats_of(sub, "digits")
    assert stats["escalations"] == 0 and stats["escalation_failures"] >= 3
    assert daemon.log.count("escalation model: model failed") < stats["escalation_failures"]

    fault.unlink()
    seen = len(faulted)

    def escalated() -> list[dict[str, Any]]:
        return [r for r in sub.json_on("edge/test-pi/digits/result")[seen:] if r["escalated"]]

    wait_until(lambda: len(escalated()) >= 3, 30)
    for result in escalated():
        assert result["model"]["name"] == "digits_float" and "escalation_error" not in result
    wait_until(lambda: stats_of(sub, "digits").get("escalations", 0) > 0, 10)
    assert stats_of(sub, "digits")["escalation_state"] == "running"
    stop(daemon)


# -- a stage's model that hangs --------------------------------------------------------------------

def test_a_hung_stage_model_stops_the_watchdog_and_is_named(tmp_path, mosquitto, subscribe,
                                                             start_daemon, listener):  # noqa: F811 - the fixture
    # The stall hook reaches stage models too: the stage's second invoke hangs the publish
    # thread for good; systemd must hear no more pings, and the status names that thread.
    draw_scenes(tmp_path / "scenes")
    sub = subscribe("edge/test-pi/shapes/result")
    config = write_config(tmp_path / "c.toml", mosquitto, [{
        "name": "shapes", "source": {"type": "images", "path": str(tmp_path / "scenes"),
                                     "loop": True, "fps": 20.0},
        "model": {"path": str(SHAPES_MODEL), "threads": 1}}])
    config.write_text(config.read_text() + STAGE)
    daemon = start_daemon(config, **listener.env(), **{STALL_INFERENCE_ENV: "shapes.shape"})
    listener.context = lambda: daemon.log
    listener.receive_until(lambda f: "READY=1" in f, 60)
    wait_until(lambda: sub.on("edge/test-pi/shapes/result"), 30)  # the stage ran once
    (first,) = sub.json_on("edge/test-pi/shapes/result")[:1]
    assert "detections" in first["detections"][0]["stages"]["shape"]
    stuck = listener.receive_until(lambda f: status(f).startswith("stuck"), 30)
    assert status(stuck) == "stuck: publish-shapes"
    later = listener.collect(4 * PING_INTERVAL)
    assert later and not any(ping(f) for f in later), later
    assert "model shapes.shape hangs inside invoke now" in daemon.log
