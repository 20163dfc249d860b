"""When results are held back to share a commit, and when they go (fake clock, recording sink)."""

from __future__ import annotations

from typing import Any, Sequence

from conftest import digits_pipeline, wait_until, write_config
from edge_runtime.app_config import load_config
from edge_runtime.pipeline.batch import ResultBatch
from edge_runtime.publishing.mqtt_publisher import MqttPublisher


class RecordingSink:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on

    def publish_results(self, pipeline: str, bodies: Sequence[dict[str, Any]]) -> list[int]:
        numbers = [body["n"] for body in bodies]
        self.batches.append(numbers)
        if self.fail_on in numbers:
            raise ValueError("Out of range float values are not JSON compliant")
        return numbers


def make(sink: RecordingSink, now: list[float], max_results: int = 4):
    published: list[int] = []
    failures: list[Exception] = []
    batch = ResultBatch(sink, "p", published.append, failures.append, max_results=max_results,
                        max_wait=0.05, clock=lambda: now[0])
    return batch, published, failures


def test_a_result_goes_at_once_when_no_frame_is_waiting():
    sink, now = RecordingSink(), [0.0]
    batch, published, _ = make(sink, now)
    batch.add({"n": 1})
    batch.flush_unless(more_coming=False)
    assert sink.batches == [[1]] and published == [1] and len(batch) == 0


def test_results_share_a_commit_while_frames_wait_up_to_the_size_limit():
    sink, now = RecordingSink(), [0.0]
    batch, published, _ = make(sink, now)
    for n in range(6):
        batch.add({"n": n})
        batch.flush_unless(more_coming=True)
    assert sink.batches == [[0, 1, 2, 3]] and len(batch) == 2
    batch.flush_unless(more_coming=False)
    assert sink.batches == [[0, 1, 2, 3], [4, 5]] and published == [4, 2]


def test_a_held_result_waits_no_longer_than_max_wait():
    sink, now = RecordingSink(), [10.0]
    batch, _, _ = make(sink, now, max_results=1000)
    batch.add({"n": 0})
    now[0] = 10.049
    batch.flush_unless(more_coming=True)
    assert sink.batches == []
    now[0] = 10.05
    batch.flush_unless(more_coming=True)
    assert sink.batches == [[0]]


def test_a_batch_with_unencodable_results_counts_the_stored_ones(tmp_path, mosquitto, subscribe):
    """Through the real publisher, outbox and broker: a NaN score fails alone."""
    config = write_config(tmp_path / "c.toml", mosquitto, [digits_pipeline()], outbox={
        "path": str(tmp_path / "o.sqlite")})
    publisher = MqttPublisher(load_config(config))
    sub = subscribe("edge/test-pi/p/result")
    published: list[int] = []
    failures: list[Exception] = []
    batch = ResultBatch(publisher, "p", published.append, failures.append)
    publisher.start()
    try:
        for score in (0.5, float("nan"), 0.7, float("inf"), 0.9):
            batch.add({"score": score})
        batch.flush()
        assert published == [3] and len(failures) == 2
        assert all("JSON compliant" in str(f) for f in failures)
        received = wait_until(lambda: len(sub.json_on("edge/test-pi/p/result")) >= 3 and
                              sub.json_on("edge/test-pi/p/result"), 10)
        assert [(r["seq"], r["score"]) for r in received] == [(0, 0.5), (1, 0.7), (2, 0.9)]
    finally:
        publisher.stop(10)


def test_a_failed_batch_is_reported_and_the_next_one_goes_normally():
    sink, now = RecordingSink(fail_on=1), [0.0]
    batch, published, failures = make(sink, now)
    batch.add({"n": 0})
    batch.add({"n": 1})
    batch.flush()
    assert len(failures) == 1 and "JSON compliant" in str(failures[0]) and published == []
    batch.add({"n": 2})
    batch.flush()
    assert published == [1] and sink.batches[-1] == [2]
