"""threads = "auto": the tuner's arithmetic (fake clock), the config key, a model switching thread
counts, and a real pipeline choosing its count while every frame still gets its result.
Which count wins on this machine is measured in bench/bench_video.py, not asserted here."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from conftest import DIGITS_INT8, DIGITS_SAMPLES, wait_until, write_config
from edge_runtime.app_config import load_config
from edge_runtime.config.typed import ConfigError
from edge_runtime.model.runtime import select_runtime
from edge_runtime.model.tflite_model import TfliteModel
from edge_runtime.pipeline.auto_threads import ThreadTuner, candidate_counts, median
from edge_runtime.publishing.stats import StatsReporter
from test_pipeline_perf import Run


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(tuner: ThreadTuner, clock: FakeClock, seconds_per_invoke: dict[int, float],
          limit: int = 100_000) -> list[int]:
    """Invoke at each count's speed until the tuner decides; returns the counts it switched to."""
    switches = []
    for _ in range(limit):
        if tuner.done:
            return switches
        clock.now += seconds_per_invoke[tuner.current]
        switch = tuner.invoked()
        if switch is not None:
            switches.append(switch)
    raise AssertionError("the tuner never decided")


def test_the_tuner_tries_each_count_in_turn_and_keeps_the_fastest() -> None:
    clock = FakeClock()
    tuner = ThreadTuner([1, 2], trial_s=1.0, warmup=3, rounds=2, clock=clock)
    assert tuner.current == 1
    switches = drive(tuner, clock, {1: 0.010, 2: 0.025})  # 100/s against 40/s
    assert switches == [2, 1, 2, 1]  # 1, 2, 1, 2, then back to the winner
    assert tuner.report.chosen == tuner.current == 1
    medians = tuner.report.medians()
    assert medians[1] == pytest.approx(100, rel=0.02) and medians[2] == pytest.approx(40, rel=0.05)
    assert tuner.invoked() is None  # decided: no more switches
    assert tuner.report.describe().startswith("auto, chose 1 (1: 10")


def test_more_threads_win_when_they_are_faster() -> None:
    clock = FakeClock()
    tuner = ThreadTuner([1, 2, 3], trial_s=0.5, rounds=1, clock=clock)
    assert drive(tuner, clock, {1: 0.010, 2: 0.006, 3: 0.008}) == [2, 3, 2]
    assert tuner.report.chosen == 2


def test_fewer_threads_win_a_tie() -> None:
    # A 30 fps camera: every count gives 30 results/s, so the cheapest one is kept.
    clock = FakeClock()
    tuner = ThreadTuner([1, 2], trial_s=1.0, rounds=2, tie=0.03, clock=clock)
    drive(tuner, clock, {1: 1 / 30, 2: 1 / 30.5})
    assert tuner.report.chosen == 1


def test_an_interruption_restarts_the_trial_instead_of_counting_the_wait() -> None:
    clock = FakeClock()
    tuner = ThreadTuner([1, 2], trial_s=1.0, warmup=1, rounds=1, clock=clock)
    for _ in range(5):
        clock.now += 0.01
        tuner.invoked()
    clock.now += 30.0  # the source stalled for 30 s
    tuner.interrupted()
    drive(tuner, clock, {1: 0.01, 2: 0.02})
    assert tuner.report.medians()[1] == pytest.approx(100, rel=0.02)


def test_median_of_odd_and_even_counts() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0]) == 2.5
    assert median([7.0]) == 7.0


def test_candidates_are_one_to_the_cpu_count_capped() -> None:
    assert candidate_counts(1) == [1]
    assert candidate_counts(2) == [1, 2]
    assert candidate_counts(64) == [1, 2, 3, 4]


def pipeline(threads: object, loop: bool = False) -> dict:
    return {"name": "auto", "source": {"type": "images", "path": str(DIGITS_SAMPLES), "loop": loop},
            "model": {"path": str(DIGITS_INT8), "threads": threads}}


def test_the_config_takes_auto_or_a_count_and_names_the_key_otherwise(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path / "a.toml", None, [pipeline("auto")])) \
        .pipelines[0].model.threads == "auto"
    for bad, message in (("fast", "'auto'"), (0, ">= 1")):
        with pytest.raises(ConfigError) as info:
            load_config(write_config(tmp_path / "b.toml", None, [pipeline(bad)]))
        assert info.value.key == "pipelines[0].model.threads" and message in info.value.message


def test_a_model_switches_thread_counts_and_computes_the_same() -> None:
    model = TfliteModel(DIGITS_INT8, select_runtime(), threads=1)
    data = np.random.default_rng(0).integers(0, 255, model.inputs[0].shape).astype(
        model.inputs[0].dtype)
    model.set_input(0, data)
    model.invoke()
    before = model.raw_output(0)
    model.set_threads(2)
    assert model.threads == 2
    model.set_input(0, data)
    model.invoke()
    np.testing.assert_array_equal(model.raw_output(0), before)


def test_a_pipeline_with_auto_threads_chooses_and_loses_no_frame(tmp_path: Path, mosquitto,
                                                                  subscribe, caplog) -> None:
    caplog.set_level(logging.INFO, logger="edge_runtime.pipeline.inference_stage")
    run = Run(tmp_path, mosquitto, subscribe, pipeline("auto", loop=True), overlap=None)
    run.publisher.attach_stats(StatsReporter("test-pi", [run.runner]))
    run.start()
    runner = run.runner
    report = runner.stats.threads_auto
    assert report is not None and report.chosen is None  # measuring
    wait_until(lambda: report.chosen is not None, 60)
    stats = run.publisher.stats()["pipelines"]["auto"]
    runner.stop()
    results = run.finish()
    assert report.chosen in candidate_counts()
    assert runner.parts.model.threads == runner.stats.threads == report.chosen
    assert stats["threads"] == report.chosen
    assert stats["threads_auto"]["chosen"] == report.chosen
    assert set(stats["threads_auto"]["results_per_s"]) == {str(n) for n in candidate_counts()}
    assert f"threads auto, chose {report.chosen}" in caplog.text
    # every frame read became a result, in order, across the interpreter switches
    assert [r["seq"] for r in results] == list(range(len(results)))
    assert [r["source"]["frame"] for r in results] == list(range(len(results)))
    names = sorted(p.name for p in DIGITS_SAMPLES.glob("*.png"))
    assert [r["source"]["name"] for r in results[:len(names)]] == names
    first = {r["source"]["name"]: r["classes"] for r in results[:len(names)]}
    assert all(r["classes"] == first[r["source"]["name"]] for r in results)
