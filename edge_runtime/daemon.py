"""The daemon: every pipeline of a config, publishing to one broker, until stopped or done."""

from __future__ import annotations

import logging
import threading

from edge_runtime.config.schema import AppConfig
from edge_runtime.extras import Extras
from edge_runtime.pipeline.assembly import PipelineParts, assemble
from edge_runtime.pipeline.observer import plan as plan_extras
from edge_runtime.pipeline.runner import PipelineRunner
from edge_runtime.publishing.mqtt_publisher import MqttPublisher
from edge_runtime.publishing.stats import StatsReporter
from edge_runtime.supervision.deadline import Deadline
from edge_runtime.supervision.heartbeat import Heartbeats
from edge_runtime.supervision.sd_notify import SystemdNotifier, WatchdogSettings, WatchdogThread

logger = logging.getLogger(__name__)

# One budget for the whole shutdown, SIGTERM to exit. systemd SIGKILLs the daemon TimeoutStopSec
# (systemd/edge-runtime.service: 20 s) after SIGTERM; the budget leaves that much room for the
# interpreter's own exit on a slow, loaded Pi (tests/test_fault_shutdown.py reads the unit and
# compares). Every pipeline is told to stop at once; their joins, the flush of queued results and
# the broker goodbye share the budget, and what is not delivered by then stays in the outbox.
SHUTDOWN_BUDGET = 15.0
GOODBYE_RESERVE = 3.0  # kept for the final stats, `offline`, the disconnect and closing the outbox
FLUSH_RESERVE = 3.0  # the joins leave at least this for delivering the results queued so far


def prepare(app: AppConfig) -> list[PipelineParts]:
    """Build every pipeline (loads every model); raises ConfigError before anything runs."""
    parts = [assemble(pipeline, app) for pipeline in app.pipelines]
    plan_extras(app, parts)  # tracker, snapshot and Home Assistant checks
    return parts


class Daemon:
    def __init__(self, app: AppConfig, parts: list[PipelineParts]) -> None:
        self.app = app
        self.heartbeats = Heartbeats()
        # systemd (Type=notify): READY once running, WATCHDOG=1 while every heartbeat is fresh.
        self.notifier = SystemdNotifier.from_env()
        self.watchdog = WatchdogThread(self.notifier, self.heartbeats, WatchdogSettings.from_env(),
                                       self.status_line)
        self.publisher = MqttPublisher(app, self.heartbeats)
        # Tracking, events, Home Assistant discovery/states/control, snapshots (observer.py).
        self.extras = Extras.build(app, parts, self.publisher, self.heartbeats, self._control)
        self.runners = [
            PipelineRunner(
                part,
                rebuild=lambda p=part.config: assemble(p, app),
                sink=self.publisher,
                device=app.device.id,
                heartbeats=self.heartbeats,
                observer=self.extras.needed(part.config.name),
                retry=app.retry,
            )
            for part in parts
        ]
        # The retained {prefix}/{device}/stats message reads the runners' counters.
        self.publisher.attach_stats(StatsReporter(app.device.id, self.runners))

    def run(self, stop: threading.Event) -> int:
        """Run until `stop` is set or every pipeline's (finite) source is done; then shut down."""
        main_beat = self.heartbeats.register("main")
        self.publisher.start()
        if self.extras.snapshots is not None:
            self.extras.snapshots.start()
        for runner in self.runners:
            runner.start()
        logger.info("running %d pipeline(s): %s; publishing to %s:%d under %s/",
                    len(self.runners), ", ".join(r.name for r in self.runners),
                    self.app.mqtt.host, self.app.mqtt.port, self.publisher.topics.base)
        if self.notifier.enabled:
            self.watchdog.start()
            self.notifier.ready(self.status_line())
        try:
            while not stop.wait(0.5):
                main_beat.beat()
                if all(runner.finished for runner in self.runners):
                    logger.info("every source is finished; delivering what is queued")
                    # A finite run ends once the broker has every result, or on a signal; what
                    # is still undelivered then stays in the outbox for the next start.
                    while (not self.publisher.flush(0.5) and not stop.is_set()
                           and self.publisher.running):
                        main_beat.beat()
                    break
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        """Stop within SHUTDOWN_BUDGET, whatever hangs: a thread still alive then is left behind
        (they are daemon threads), undelivered results stay in the outbox for the next start."""
        deadline = Deadline.after(SHUTDOWN_BUDGET)
        self.notifier.stopping()
        for runner in self.runners:  # every source sees the stop at once (reads return in ~0.5 s)
            runner.stop()
        for runner in self.runners:  # one deadline for all joins, not a timeout each
            runner.join(deadline.remaining(keep=GOODBYE_RESERVE + FLUSH_RESERVE))
        if self.extras.snapshots is not None:
            self.extras.snapshots.stop(deadline.remaining(keep=GOODBYE_RESERVE + FLUSH_RESERVE))
        self.publisher.stop(deadline.remaining(), goodbye=GOODBYE_RESERVE)
        self.log_summary()
        self.heartbeats.unregister("main")
        if self.watchdog.is_alive():  # pinged through the shutdown
            self.watchdog.stop()
            self.watchdog.join(max(0.5, deadline.remaining()))
        self.notifier.close()

    def log_summary(self) -> None:
        """One line per pipeline at exit, each count named for what it counts."""
        outbox = self.publisher.outbox.snapshot().pipelines
        for runner in self.runners:
            counts = outbox.get(runner.name)
            logger.info("pipeline %s: %d frames, %d results, %d stale frames skipped (live "
                        "source), %d bad inputs; outbox: %d results dropped (full), %d waiting",
                        runner.name, runner.stats.frames, runner.stats.results, runner.dropped,
                        runner.input_errors(), counts.dropped if counts else 0,
                        counts.depth if counts else 0)

    def _control(self, pipeline: str, running: bool) -> None:
        """A pause / resume command from Home Assistant (network thread)."""
        for runner in self.runners:
            if runner.name == pipeline:
                runner.pause(not running)

    def status_line(self) -> str:
        """One line for systemd's STATUS= and logs."""
        broker = "connected" if self.publisher.connected else "broker unreachable"
        waiting = self.publisher.pending()
        if waiting:
            broker += f" ({waiting} results to deliver)"
        parts = [f"{r.name}: {r.stats.state}, {r.stats.results} results"
                 + (f", {r.stats.source_reconnects} source reconnects" if r.stats.source_reconnects else "")
                 for r in self.runners]
        return f"{broker}; " + "; ".join(parts)
