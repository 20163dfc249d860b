"""Where the daemon's threads run. `[pipelines.model] cpus`: a pipeline's inference thread on CPUs
of its own, every other thread of the daemon on the rest (supervision/cpus.py); and, always, every
thread but the inference threads at SCHED_BATCH (supervision/threads.py). The config checks name
the key; a real daemon's threads are read from /proc while it runs. What either gains is measured
in bench/ (`--cpus`; docs/PERFORMANCE.md), not asserted here."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import (DIGITS_INT8, Broker, Subscriber, digits_pipeline,
                      edge_runtime, wait_until, write_config)
from edge_runtime.app_config import load_config
from edge_runtime.config.typed import ConfigError

CPUS = sorted(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(len(CPUS) < 2, reason="needs a process allowed on 2 CPUs or more")


def config_with(tmp_path: Path, model: dict, broker: Broker | None = None, **source) -> Path:
    pipeline = digits_pipeline(**source)
    pipeline["model"].update(model)
    return write_config(tmp_path / "config.toml", broker, [pipeline])


def test_a_cpu_this_process_cannot_use_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pipelines\[0\]\.model\.cpus.*CPU 4096 is not one"):
        load_config(config_with(tmp_path, {"cpus": [4096]}))
    with pytest.raises(ConfigError, match=r"pipelines\[0\]\.model\.cpus.*twice"):
        load_config(config_with(tmp_path, {"cpus": [0, 0]}))


def test_every_cpu_taken_leaves_none_for_the_rest_and_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pipelines\[0\]\.model\.cpus.*leave no CPU"):
        load_config(config_with(tmp_path, {"cpus": CPUS}))


def test_a_stage_model_takes_no_cpus(tmp_path: Path) -> None:
    config = config_with(tmp_path, {})
    config.write_text(config.read_text() + "\n".join([
        "[[pipelines.stages]]", 'name = "again"',
        "[pipelines.stages.model]", f'path = "{DIGITS_INT8}"', f"cpus = [{CPUS[0]}]", ""]))
    done = edge_runtime("check", "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert "pipelines[0].stages[0].model.cpus" in done.stderr, done.stderr


def per_thread(pid: int, read: Callable[[Path], Any]) -> dict[str, Any]:
    """Each thread's kernel name (and id) -> read(its /proc/<pid>/task/<tid> folder)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[f"{(task / 'comm').read_text().strip()} ({task.name})"] = read(task)
        except OSError:
            continue  # ended meanwhile
    return out


def allowed_cpus(task: Path) -> set[int]:
    """The CPUs a thread may run on (Cpus_allowed_list)."""
    listed = next(line.split(":", 1)[1].strip() for line in (task / "status").read_text()
                  .splitlines() if line.startswith("Cpus_allowed_list:"))
    cpus: set[int] = set()
    for part in listed.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def scheduling_policy(task: Path) -> int:
    """A thread's scheduling policy (os.SCHED_*)."""
    return os.sched_getscheduler(int(task.name))


def named(threads: dict[str, Any], name: str) -> Any:
    [value] = [value for key, value in threads.items() if key.startswith(f"{name} (")]
    return value


def threads_once_running(tmp_path: Path, mosquitto: Broker, start_daemon: Callable[..., Any],
                         model: dict, read: Callable[[Path], Any]) -> tuple[Any, dict[str, Any]]:
    """Start the daemon on the looping digits, and once a result arrived, read each thread."""
    config = config_with(tmp_path, model, mosquitto, loop=True, fps=20)
    results = Subscriber(mosquitto, ["edge/test-pi/digits/result"])
    daemon = start_daemon(config)
    try:
        wait_until(lambda: results.on("edge/test-pi/digits/result"), 20)
        return daemon, per_thread(daemon.process.pid, read)
    finally:
        results.close()


@needs_two
def test_the_inference_thread_has_its_cpu_and_every_other_thread_the_rest(
        tmp_path: Path, mosquitto: Broker, start_daemon) -> None:
    own, rest = CPUS[-1], set(CPUS[:-1])
    stats = Subscriber(mosquitto, ["edge/test-pi/stats"])
    try:
        daemon, threads = threads_once_running(tmp_path, mosquitto, start_daemon,
                                               {"cpus": [own]}, allowed_cpus)
        assert named(threads, "inference-digit") == {own}, threads  # the kernel keeps 15 bytes
        for name in ("source-digits", "prepare-digits", "publish-digits", "mqtt-network"):
            assert named(threads, name) == rest, threads
        # every other thread too: the main thread, and pools libraries started at import
        others = {key: cpus for key, cpus in threads.items()
                  if not key.startswith("inference-digit (")}
        assert len(others) == len(threads) - 1 and all(c == rest for c in others.values()), threads
        wait_until(lambda: any(json.loads(m)["pipelines"]["digits"].get("cpus") == [own]
                               for m in stats.on("edge/test-pi/stats")), 20)
    finally:
        stats.close()
    assert f"inference on CPU(s) {own}" in daemon.log, daemon.log


def test_helper_threads_run_at_sched_batch_and_the_inference_thread_does_not(
        tmp_path: Path, mosquitto: Broker, start_daemon) -> None:
    """A decode or publish that wakes must not push the interpreter off its core."""
    _, policies = threads_once_running(tmp_path, mosquitto, start_daemon, {}, scheduling_policy)
    assert named(policies, "inference-digit") == os.SCHED_OTHER, policies
    for name in ("source-digits", "prepare-digits", "publish-digits", "mqtt-network"):
        assert named(policies, name) == os.SCHED_BATCH, policies


@needs_two
def test_without_cpus_every_thread_may_run_anywhere(
        tmp_path: Path, mosquitto: Broker, start_daemon) -> None:
    _, threads = threads_once_running(tmp_path, mosquitto, start_daemon, {}, allowed_cpus)
    assert all(cpus == set(CPUS) for cpus in threads.values()), threads


def test_cpus_with_threads_auto_tries_no_more_threads_than_its_cpus(tmp_path: Path) -> None:
    from edge_runtime.daemon import prepare
    from edge_runtime.pipeline.inference_stage import InferenceStage
    from edge_runtime.pipeline.stats import PipelineStats

    def tried(model: dict) -> list[int]:
        parts = prepare(load_config(config_with(tmp_path, {"threads": "auto", **model})))[0]
        stage = InferenceStage("digits", parts, lambda: parts, PipelineStats())
        assert stage._tuner is not None  # noqa: SLF001 - what the tuner will try
        return list(stage._tuner.report.rates)  # noqa: SLF001

    assert tried({"cpus": [CPUS[0]]}) == [1]
    if len(CPUS) >= 2:  # without cpus, as many as this machine has (at most 4)
        assert len(tried({})) >= 2
