"""The inference thread's time by cause (pipeline/invoke_meter.py): the arithmetic with a fake
clock, the kernel's per-thread accounting for real, and the meter inside a real pipeline, whose
stats message carries it. What the numbers are on a given machine is measured in bench/."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from conftest import DIGITS_INT8, VIBRATION_CSV, VIBRATION_MODEL, wait_until
from edge_runtime.pipeline.invoke_meter import GAP_CAUSES, InvokeMeter, SchedStat
from edge_runtime.publishing.stats import StatsReporter
from test_pipeline_perf import Run, many_frames


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeSchedStat:
    """(CPU ns, run-queue ns) that the test advances by hand."""

    available = True

    def __init__(self) -> None:
        self.cpu = self.wait = 0

    def read(self) -> tuple[int, int]:
        return self.cpu, self.wait

    def close(self) -> None:
        pass


def test_the_gap_is_split_by_the_marks_and_invoke_by_the_kernel_accounting() -> None:
    clock, sched = FakeClock(), FakeSchedStat()
    meter = InvokeMeter(clock, lambda: sched)
    meter.bind_thread()
    meter.mark("wait_input")  # before the first invoke: no gap yet, ignored
    for _ in range(3):
        meter.invoke_starting()
        clock.now += 0.010
        sched.cpu += 7_000_000
        sched.wait += 1_000_000  # 10 ms wall = 7 running + 1 waiting for a core + 2 stalled
        assert meter.invoke_ended() == pytest.approx(0.010)
        clock.now += 0.001
        meter.mark("copy_out")
        clock.now += 0.002
        sched.wait += 500_000
        meter.mark("wait_input")
        clock.now += 0.0005
        meter.mark("copy_in")
        clock.now += 0.0001
    totals = meter.snapshot()
    assert totals.invokes == 3 and totals.gaps == 2  # the gap after the last invoke is open
    assert totals.gap_s["copy_out"] == pytest.approx(0.003)  # 3 marks, the last one open too
    assert totals.gap_s["other"] == pytest.approx(0.0002)  # the unmarked rest, closed gaps only
    doc = totals.to_dict()
    assert doc["invoke_ms"] == 10.0
    assert doc["invoke_ms_split"] == {"cpu": 7.0, "core_wait": 1.0, "stalled": 2.0}
    assert doc["gap_core_wait_ms"] == 0.5
    assert set(doc["gap_ms"]) == set(GAP_CAUSES)
    # busy: invokes 2 and 3 (20 ms) against the two gaps between them (2 x 3.6 ms) ...
    # ... plus the open marks after the third, which the totals already hold
    gap_total = sum(totals.gap_s.values())
    assert totals.busy == pytest.approx(0.020 / (0.020 + gap_total))


def test_idle_leaves_the_next_gap_uncounted() -> None:
    clock = FakeClock()
    meter = InvokeMeter(clock, schedstat=None)
    meter.bind_thread()
    meter.invoke_starting()
    clock.now += 0.01
    meter.invoke_ended()
    meter.idle()  # e.g. a model reload with backoff
    clock.now += 5.0
    meter.mark("wait_input")
    meter.invoke_starting()
    totals = meter.snapshot()
    assert totals.gaps == 0 and sum(totals.gap_s.values()) == 0.0
    assert "invoke_ms_split" not in totals.to_dict()  # no kernel accounting asked for


def test_schedstat_reads_this_threads_cpu_time_from_the_kernel() -> None:
    result: list[tuple[int, int]] = []

    def spin_then_sleep() -> None:
        sched = SchedStat()
        if not sched.available:
            result.append((-1, -1))
            return
        before = sched.read()
        deadline = time.thread_time() + 0.05
        while time.thread_time() < deadline:  # 50 ms of CPU on this thread
            pass
        time.sleep(0.1)  # sleeping is neither CPU nor run-queue time
        after = sched.read()
        sched.close()
        result.append((after[0] - before[0], after[1] - before[1]))

    thread = threading.Thread(target=spin_then_sleep)
    thread.start()
    thread.join()
    cpu_ns, wait_ns = result[0]
    if cpu_ns == -1:
        pytest.skip("no /proc/thread-self/schedstat on this kernel")
    assert 0.045e9 <= cpu_ns < 0.1e9  # this thread's CPU, not the process's
    assert wait_ns >= 0


@pytest.mark.parametrize("source, model, overlap", [
    ("images", DIGITS_INT8, None),  # stage threads: copy_in / hand_off
    ("csv", VIBRATION_MODEL, None),  # one worker: prepare / publish inside the gap
], ids=["stages", "one-worker"])
def test_a_pipeline_meters_every_invoke_and_publishes_it_in_its_stats(
        tmp_path: Path, mosquitto, subscribe, source: str, model: Path, overlap: bool | None) -> None:
    if source == "images":
        src = {"type": "images", "path": str(many_frames(tmp_path / "frames", copies=2))}
    else:
        src = {"type": "csv", "path": str(VIBRATION_CSV), "stride": 16}
    run = Run(tmp_path, mosquitto, subscribe, {
        "name": "meter", "source": src, "model": {"path": str(model), "threads": 1}},
        overlap=overlap)
    run.publisher.attach_stats(StatsReporter("test-pi", [run.runner]))
    run.start()
    wait_until(lambda: run.runner.finished, 120)
    entry = run.publisher.stats()["pipelines"]["meter"]
    results = run.finish()
    totals = run.runner.meter.snapshot()
    assert totals.invokes == len(results) > 10
    assert totals.gaps == totals.invokes - 1
    assert 0.0 < totals.busy <= 1.0
    used = {cause for cause, s in totals.gap_s.items() if s > 0}
    expected = {"copy_in", "hand_off", "copy_out"} if source == "images" else {"prepare", "publish"}
    assert expected <= used
    if totals.schedstat:
        assert 0 < totals.invoke_cpu_s <= totals.invoke_s * 1.05
    assert entry["interpreter"]["invokes"] == len(results)
    assert entry["interpreter"]["busy"] == pytest.approx(totals.busy, abs=1e-3)
