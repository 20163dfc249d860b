"""Threads own what they write (docs/ARCHITECTURE.md "Threads and what they own").

PipelineStats names each counter's one writer thread beside the field (pipeline/stats.py);
here every write to a PipelineStats field in pipeline/ is read from the source and must sit in
the module that runs on that thread. And a reader on another thread (the stats reporter) must
survive its writer growing a dict while it reads: provoked with a tiny GIL switch interval and
garbage whose finalizer the collector runs in the middle of the reader's copy.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
import threading
from pathlib import Path

from edge_runtime.config.integration import HomeAssistantConfig
from edge_runtime.config.schema import MqttConfig
from edge_runtime.homeassistant.service import HomeAssistantService
from edge_runtime.messages.topics import Topics
from edge_runtime.pipeline.cascade import CascadeStats
from edge_runtime.pipeline.stats import PipelineStats
from edge_runtime.publishing.listeners import Link
from edge_runtime.transport.mqtt import make_client

PIPELINE = Path(__file__).resolve().parent.parent / "edge_runtime" / "pipeline"
THREADS = ("source", "prepare", "inference", "publish")
# The module whose code runs on each thread ("prepare"/"publish" run inline on the inference
# thread of a sensor pipeline: one thread either way, see stats.py).
MODULE_THREAD = {"source_stage": "source", "prepare_stage": "prepare",
                 "inference_stage": "inference", "publish_stage": "publish",
                 "cascade": "publish", "observer": "publish"}


def declared_writers() -> dict[str, str | None]:
    """Field -> its writer thread, from the comment beside it; None: set once at construction."""
    text = (PIPELINE / "stats.py").read_text(encoding="utf-8")
    writers: dict[str, str | None] = {}
    for field in dataclasses.fields(PipelineStats):
        line = re.search(rf"^\s+{field.name}: [^#\n]*#\s*(\w+)", text, re.M)
        assert line, f"PipelineStats.{field.name} has no comment naming its writer"
        writers[field.name] = line.group(1) if line.group(1) in THREADS else None
    return writers


def stats_writes() -> list[tuple[str, str, int]]:
    """(module, field, line) of each assignment to `stats.<field>` / `self._stats.<field>`."""
    fields = {f.name for f in dataclasses.fields(PipelineStats)}
    found = []
    for path in sorted(PIPELINE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign))
                       else [])
            for target in targets:
                if not (isinstance(target, ast.Attribute) and target.attr in fields):
                    continue
                owner = target.value
                if (isinstance(owner, ast.Name) and owner.id == "stats") or (
                        isinstance(owner, ast.Attribute) and owner.attr in ("stats", "_stats")):
                    found.append((path.stem, target.attr, node.lineno))
    return found


def test_every_counter_is_written_only_on_its_owner_thread() -> None:
    writers = declared_writers()
    writes = stats_writes()
    assert {field for _, field, _ in writes} >= {"frames", "results", "input_errors",
                                                 "model_state"}, "the scan finds the writes"
    wrong = [f"pipeline/{module}.py:{line}: {field} (owner: {writers[field] or 'construction'}"
             f", this module runs on: {MODULE_THREAD.get(module, 'no stage thread')})"
             for module, field, line in writes if MODULE_THREAD.get(module) != writers[field]]
    assert not wrong, "PipelineStats written off its owner thread:\n" + "\n".join(wrong)


class _Finalized:
    """Cyclic garbage: only the collector frees it, and its __del__ is Python code."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        for _ in range(3):
            pass


def test_the_stats_reader_survives_a_stage_appearing_while_it_reads() -> None:
    # The publish thread adds a stage's counters at its first crops; the network thread turns
    # them into the stats message meanwhile. Iterating the live dict raised "dictionary changed
    # size during iteration" within a few thousand switches. Copying it with list() still did,
    # in the full suite only: the collector, freeing some earlier test's garbage in the middle of
    # the copy, ran a finalizer, which let the writer in. The reader makes such garbage here.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(5):
            stats = CascadeStats()
            done = threading.Event()

            def grow(stats: CascadeStats = stats, done: threading.Event = done) -> None:
                for i in range(20000):
                    stats.stage(f"stage{i}")
                done.set()

            writer = threading.Thread(target=grow, name="grow-stages")
            writer.start()
            reads = 0
            try:
                while not done.is_set():
                    for _ in range(20):
                        _Finalized()
                    stats.to_dict()
                    reads += 1
            finally:
                writer.join()
            assert len(stats.to_dict()) == 20000
    finally:
        sys.setswitchinterval(interval)


def test_home_assistant_puts_its_states_again_while_a_pipeline_adds_its_first() -> None:
    # A (re)connect's subscription ack makes the network thread put every entity state again
    # while a publish thread may add its pipeline's first state: the same race as above.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    put: list[str] = []
    service = HomeAssistantService(HomeAssistantConfig(discovery=True), "pi", Topics("edge", "pi"),
                                   [], lambda topic, payload: put.append(topic) or _Finalized())
    link = Link(make_client(MqttConfig(), "pi"), {})  # never connected: unsubscribe is a no-op
    try:
        done = threading.Event()

        def grow() -> None:
            for i in range(20000):
                service.state(f"p{i}", b"{}")
            done.set()

        writer = threading.Thread(target=grow, name="grow-states")
        writer.start()
        try:
            while not done.is_set():  # the sink leaves garbage for the next copy to collect
                service._subscribed(link)  # noqa: SLF001 - what the SUBACK callback runs
        finally:
            writer.join()
        put.clear()
        service._subscribed(link)  # noqa: SLF001
        assert len([t for t in put if t.endswith("/state")]) == 20000, put[:5]
    finally:
        sys.setswitchinterval(interval)
