"""Publish modes: every result, or only changes, with a rate cap and a heartbeat; seq gap-free."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import DIGITS_INT8, DIGITS_SAMPLES, edge_runtime, write_config
from edge_runtime.config.schema import PublishConfig
from edge_runtime.pipeline.publish_policy import PublishPolicy
from edge_runtime.postprocessing.registry import TASKS

CLASSES = TASKS["classification"].summarize  # what `change` compares, as the task says
DETECTIONS = TASKS["detection"].summarize


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def top(label: str) -> dict[str, Any]:
    return {"classes": [{"index": 0, "label": label, "score": 0.9}]}


def detected(*labels: str) -> dict[str, Any]:
    return {"detections": [{"index": i, "label": label, "score": 0.8, "box": {}}
                           for i, label in enumerate(labels)]}


def decide(policy: PublishPolicy, clock: FakeClock,
           timeline: list[tuple[float, dict]]) -> list[bool]:
    out = []
    for when, fields in timeline:
        clock.now = when
        out.append(policy.should_publish(fields))
    return out


def test_every_mode_publishes_everything() -> None:
    clock = FakeClock()
    policy = PublishPolicy(PublishConfig(), CLASSES, clock)
    assert decide(policy, clock, [(i * 0.01, top("cat")) for i in range(5)]) == [True] * 5


def test_every_mode_with_min_interval_caps_the_rate() -> None:
    clock = FakeClock()
    policy = PublishPolicy(PublishConfig(min_interval=1.0), CLASSES, clock)
    timeline = [(t / 4, top("cat")) for t in range(13)]  # 4 results/s for 3 s
    published = [t for (t, _), ok in zip(timeline, decide(policy, clock, timeline)) if ok]
    assert published == [0.0, 1.0, 2.0, 3.0]


def test_change_mode_publishes_the_first_result_and_each_change() -> None:
    clock = FakeClock()
    policy = PublishPolicy(PublishConfig(mode="change", max_interval=0), CLASSES, clock)
    labels = ["cat", "cat", "dog", "dog", "dog", "cat", "cat"]
    timeline = [(float(i), top(label)) for i, label in enumerate(labels)]
    assert decide(policy, clock, timeline) == [True, False, True, False, False, True, False]


def test_change_mode_republishes_an_unchanged_result_after_max_interval() -> None:
    clock = FakeClock()
    policy = PublishPolicy(PublishConfig(mode="change", max_interval=5.0), CLASSES, clock)
    timeline = [(float(t), top("cat")) for t in range(12)]
    published = [t for (t, _), ok in zip(timeline, decide(policy, clock, timeline)) if ok]
    assert published == [0.0, 5.0, 10.0]


def test_change_mode_min_interval_delays_a_change_until_the_cap_allows_it() -> None:
    clock = FakeClock()
    policy = PublishPolicy(PublishConfig(mode="change", min_interval=2.0, max_interval=0),
                           CLASSES, clock)
    timeline = [(0.0, top("cat")), (0.5, top("dog")), (1.0, top("dog")), (2.5, top("dog")),
                (3.0, top("cat")), (4.5, top("cat"))]
    # dog at 0.5 is held by the cap; still dog at 2.5 -> published then. cat at 3.0 is held;
    # still cat at 4.5 -> published.
    assert decide(policy, clock, timeline) == [True, False, False, True, False, True]


def test_a_change_back_within_the_cap_is_not_published() -> None:
    clock = FakeClock()
    policy = PublishPolicy(PublishConfig(mode="change", min_interval=2.0, max_interval=0),
                           CLASSES, clock)
    timeline = [(0.0, top("cat")), (0.5, top("dog")), (1.0, top("cat")), (3.0, top("cat"))]
    assert decide(policy, clock, timeline) == [True, False, False, False]


def test_detections_compare_the_set_of_labels() -> None:
    clock = FakeClock()
    policy = PublishPolicy(PublishConfig(mode="change", max_interval=0), DETECTIONS, clock)
    timeline = [(0.0, detected("person", "car")), (1.0, detected("car", "person")),
                (2.0, detected("car", "person", "person")), (3.0, detected("car")),
                (4.0, detected()), (5.0, detected())]
    assert decide(policy, clock, timeline) == [True, False, False, True, True, False]


def test_task_summaries() -> None:
    assert CLASSES(top("x")) == "x"
    assert CLASSES({"classes": []}) is None  # nothing above the threshold is a state too
    assert DETECTIONS(detected("a", "b", "a")) == frozenset({"a", "b"})
    assert not TASKS["raw"].changes
    with pytest.raises(ValueError):
        TASKS["raw"].summarize({"outputs": {}})


def test_change_mode_needs_labels(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", None, [{
        "name": "d", "source": {"type": "images", "path": str(DIGITS_SAMPLES)},
        "model": {"path": str(DIGITS_INT8)}, "postprocess": {"task": "raw"},
        "publish": {"mode": "change"}}])
    result = edge_runtime("check", "--config", str(config))
    assert result.returncode == 2
    assert "pipelines[0].publish.mode: 'change' compares labels" in result.stderr


def test_unknown_mode_names_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", None, [{
        "name": "d", "source": {"type": "images", "path": str(DIGITS_SAMPLES)},
        "model": {"path": str(DIGITS_INT8)}, "publish": {"mode": "sometimes"}}])
    result = edge_runtime("check", "--config", str(config))
    assert result.returncode == 2 and "pipelines[0].publish.mode" in result.stderr


def run_digits(tmp_path: Path, mosquitto, subscribe, start_daemon, name: str,
               publish: dict[str, Any]) -> list[dict[str, Any]]:
    config = write_config(tmp_path / f"{name}.toml", mosquitto, [{
        "name": name, "source": {"type": "images", "path": str(DIGITS_SAMPLES)},
        "model": {"path": str(DIGITS_INT8), "threads": 1}, "publish": publish}])
    topic = f"edge/test-pi/{name}/result"
    sub = subscribe(topic)
    daemon = start_daemon(config)
    assert daemon.wait(60) == 0, daemon.log
    return [json.loads(p) for p in sub.on(topic)]


def test_the_daemon_in_change_mode_publishes_label_changes_with_gap_free_seq(
        tmp_path: Path, mosquitto, subscribe, start_daemon) -> None:
    every = run_digits(tmp_path, mosquitto, subscribe, start_daemon, "every", {"mode": "every"})
    assert len(every) == 20
    tops = [r["classes"][0]["label"] for r in every]
    expected = [i for i, label in enumerate(tops) if i == 0 or label != tops[i - 1]]
    assert 1 < len(expected) < 20, "the samples should hold both changes and repeats"

    changes = run_digits(tmp_path, mosquitto, subscribe, start_daemon, "changes",
                         {"mode": "change", "max_interval": 0})
    assert [r["source"]["frame"] for r in changes] == expected
    assert [r["seq"] for r in changes] == list(range(len(expected)))
    assert [r["classes"][0]["label"] for r in changes] == [tops[i] for i in expected]
