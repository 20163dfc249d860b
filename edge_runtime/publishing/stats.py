"""The retained stats message on {prefix}/{device}/stats: what the device did since it started.

Built by the network thread every `[stats] interval` seconds, after each (re)connect and at
shutdown, from the pipelines' counters (written by their own threads; reading an int is atomic) and
the outbox's. Fields are documented in docs/ARCHITECTURE.md ("MQTT contract").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from edge_runtime.publishing.outbox import OutboxSnapshot
from edge_runtime.messages.payload import utc_timestamp

STATS_SCHEMA = 1


class PipelineView(Protocol):
    """What the stats need from a pipeline runner (pipeline/runner.py's PipelineRunner)."""

    name: str
    stats: Any  # PipelineStats: frames, results, failures, state
    meter: Any  # pipeline/invoke_meter.py InvokeMeter: the interpreter thread's time by cause

    @property
    def dropped(self) -> int: ...

    def input_errors(self) -> int: ...


@dataclass(frozen=True)
class LinkState:
    """The broker connection as the network thread sees it."""

    connected: bool
    connects: int  # successful connections since start
    disconnects: int  # connections lost since start
    resent: int  # results sent again after a reconnect (possible duplicates at the consumer)
    inflight: int  # sent, waiting for PUBACK
    qos0_dropped: int  # QoS 0 results not sent because the broker was away


class StatsReporter:
    def __init__(self, device: str, pipelines: Sequence[PipelineView] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.device = device
        self._pipelines = list(pipelines)
        self._clock = clock
        self._started = clock()
        self._last: dict[str, tuple[float, int]] = {}  # pipeline -> (time, results) at last report

    def payload(self, link: LinkState, outbox: OutboxSnapshot) -> dict[str, Any]:
        now = self._clock()
        pipelines: dict[str, dict[str, Any]] = {}
        for runner in self._pipelines:
            stats = runner.stats
            results = int(stats.results)
            then, before = self._last.get(runner.name, (self._started, 0))
            self._last[runner.name] = (now, results)
            pipelines[runner.name] = {
                "state": stats.state,
                "frames": int(stats.frames),
                "results": results,
                "results_per_s": round((results - before) / (now - then), 3) if now > then else 0.0,
                "frames_dropped": int(runner.dropped),  # live frames replaced by newer ones
                "gated": int(getattr(stats, "skipped", 0)),  # kept from the model by the gate
                "suppressed": int(getattr(stats, "suppressed", 0)),  # held back by publish policy
                "paused": int(getattr(stats, "paused", 0)),  # not inferred while paused by command
                "delegate": str(getattr(stats, "delegate", "cpu")),  # "cpu (edgetpu unavailable)"
                "bad_inputs": int(runner.input_errors()),
                # the source failed (camera gone, stream stalled) / came back after failing
                "source_failures": int(getattr(stats, "source_failures", 0)),
                "source_reconnects": int(getattr(stats, "source_reconnects", 0)),
                "failures": int(stats.failures),
                "interpreter": runner.meter.snapshot().to_dict(),
                "threads": int(stats.threads),
            }
            if stats.cpus:  # [pipelines.model] cpus: the inference thread's own CPUs
                pipelines[runner.name]["cpus"] = [int(cpu) for cpu in stats.cpus]
            if stats.threads_auto is not None:  # threads = "auto": chosen and measured rates
                pipelines[runner.name]["threads_auto"] = stats.threads_auto.to_dict()
            cascade = getattr(stats, "cascade", None)  # pipeline/cascade.py's CascadeStats
            if cascade is not None and cascade.escalation_checks:
                pipelines[runner.name].update(
                    escalations=int(cascade.escalations),
                    escalation_failures=int(cascade.escalation_failures),
                    escalation_reloads=int(cascade.escalation_reloads),
                    escalation_state=str(cascade.escalation_state))
            if cascade is not None and cascade.stages:
                pipelines[runner.name]["stages"] = cascade.to_dict()
        for name, counts in outbox.pipelines.items():
            # Pipelines no longer in the config may still have results waiting from an older run.
            pipeline, _, stream = name.partition("/")  # "<pipeline>/events": its event stream
            entry = pipelines.setdefault(pipeline, {"state": "not configured"})
            if stream:
                entry = entry.setdefault(stream, {})
            entry.update(seq_next=counts.next_seq, outbox_depth=counts.depth,
                         dropped=counts.dropped)
        for entry in pipelines.values():
            entry.setdefault("outbox_depth", 0)
            entry.setdefault("dropped", 0)
        return {
            "schema": STATS_SCHEMA,
            "device": self.device,
            "ts": utc_timestamp(time.time()),
            "uptime_s": round(now - self._started, 1),
            "mqtt": {
                "connected": link.connected,
                "connects": link.connects,
                "disconnects": link.disconnects,
                "resent": link.resent,
                "inflight": link.inflight,
                "qos0_dropped": link.qos0_dropped,
            },
            "outbox": {
                "backend": outbox.backend,
                "path": outbox.path,
                "depth": outbox.depth,
                "bytes": outbox.bytes,
                "dropped": outbox.dropped,
                "oldest_age_s": outbox.oldest_age_s,
            },
            "pipelines": pipelines,
        }
