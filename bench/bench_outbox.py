"""What the durable outbox costs, and how fast a backlog drains after an outage.

Everything real: a private mosquitto, the daemon's MqttPublisher talking to it over TCP, results
acknowledged by PUBACK, the outbox a sqlite file in a temporary directory (same disk as /tmp).
Variants run interleaved, several rounds, medians reported, so the ratios compare like with like
on a shared machine.

    python bench/bench_outbox.py                 # defaults: 3 rounds, 3000 results, 5000 backlog
    python bench/bench_outbox.py --rounds 5 --results 5000 --backlog 20000 --window 100 500

Figures:
  steady   results/s from the first publish_result() to the last PUBACK, broker connected: one
           producer thread as fast as it can (the ceiling; a real pipeline is slower), and three
           (three pipelines: their commits are grouped, one fsync for several results)
  drain    results/s emptying a backlog committed while the broker was down, from the reconnect
           to the last PUBACK, per in-flight window
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_runtime.config.schema import (  # noqa: E402
    AppConfig, BackoffConfig, DeviceConfig, MqttConfig, RetryConfig, StatsConfig)
from edge_runtime.publishing.mqtt_publisher import MqttPublisher  # noqa: E402
from edge_runtime.publishing.outbox import MemoryOutbox, Outbox, SqliteOutbox  # noqa: E402
from common import free_port  # noqa: E402  (bench/common.py, beside this script)


class Broker:
    """mosquitto on a free port that the bench can stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             "persistence false\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)
            self.process = None


def app_config(port: int, window: int) -> AppConfig:
    mqtt = MqttConfig(host="127.0.0.1", port=port, max_inflight=window)
    return AppConfig(file="bench.toml", base_dir=Path("."), device=DeviceConfig("bench"),
                     mqtt=mqtt, pipelines=(), stats=StatsConfig(3600.0),
                     retry=RetryConfig(broker=BackoffConfig(0.1, 0.2)))


def body(i: int) -> dict:
    """A classification result the size the daemon publishes (~400 bytes)."""
    return {"schema": 1, "device": "bench", "pipeline": "p", "seq": None,
            "ts": "2026-11-22T00:00:00.000Z", "source": {"frame": i, "width": 640, "height": 480},
            "model": {"name": "mobilenet_v2_int8", "sha256": "0" * 64},
            "timing_ms": {"preprocess": 1.2, "inference": 35.1, "postprocess": 0.2},
            "classes": [{"index": k, "label": f"label-{k}", "score": 0.1} for k in range(3)]}


OutboxFactory = Callable[[Path], Outbox]
VARIANTS: dict[str, OutboxFactory] = {
    "memory (no outbox)": lambda d: MemoryOutbox(10**9, 10**12),
    "sqlite sync=normal": lambda d: SqliteOutbox(d / "outbox.sqlite", 10**9, 10**12, "normal"),
    "sqlite sync=full": lambda d: SqliteOutbox(d / "outbox.sqlite", 10**9, 10**12, "full"),
}


def steady(broker: Broker, make: OutboxFactory, workdir: Path, count: int, window: int,
           producers: int = 1) -> float:
    """`producers` threads (one pipeline each) publish count/producers results each."""
    publisher = MqttPublisher(app_config(broker.port, window), outbox=make(workdir))
    publisher.start()
    try:
        if not publisher.wait_connected(10):
            raise RuntimeError("no connection")

        def produce(pipeline: str) -> None:
            for i in range(count // producers):
                publisher.publish_result(pipeline, body(i))

        threads = [threading.Thread(target=produce, args=(f"p{k}",)) for k in range(producers)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        count = count // producers * producers
        if not publisher.flush(120):
            raise RuntimeError("not acknowledged in time")
        return count / (time.perf_counter() - start)
    finally:
        publisher.stop(5)


def drain(broker: Broker, make: OutboxFactory, workdir: Path, count: int, window: int) -> float:
    broker.stop()
    publisher = MqttPublisher(app_config(broker.port, window), outbox=make(workdir))
    publisher.start()
    try:
        for i in range(count):
            publisher.publish_result("p", body(i))
        broker.start()
        if not publisher.wait_connected(10):
            raise RuntimeError("no connection")
        start = time.perf_counter()
        if not publisher.flush(300):
            raise RuntimeError("backlog not drained in time")
        return count / (time.perf_counter() - start)
    finally:
        publisher.stop(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", type=int, default=3000, help="results per steady run")
    parser.add_argument("--backlog", type=int, default=5000, help="results in the backlog")
    parser.add_argument("--window", type=int, nargs="+", default=[20, 100, 500],
                        help="in-flight windows for the drain runs (steady uses the first >= 100)")
    args = parser.parse_args()
    steady_window = next((w for w in args.window if w >= 100), args.window[-1])

    # The publisher's own warnings ("cannot reach broker" while the drain runs' broker is down)
    # are expected here.
    logging.basicConfig(level=logging.ERROR)
    figures: dict[str, list[float]] = {}
    run_ids = itertools.count()
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        root = Path(tmp)
        broker = Broker(root)
        broker.start()
        try:
            for round_ in range(args.rounds):
                for name, make in VARIANTS.items():
                    workdir = root / f"run{next(run_ids)}"
                    workdir.mkdir()
                    rate = steady(broker, make, workdir, args.results, steady_window)
                    figures.setdefault(f"steady | {name}", []).append(rate)
                for name in ("memory (no outbox)", "sqlite sync=full"):
                    workdir = root / f"run{next(run_ids)}"
                    workdir.mkdir()
                    rate = steady(broker, VARIANTS[name], workdir, args.results, steady_window,
                                  producers=3)
                    figures.setdefault(f"steady 3 pipelines | {name}", []).append(rate)
                for window in args.window:
                    for name in ("memory (no outbox)", "sqlite sync=full"):
                        workdir = root / f"run{next(run_ids)}"
                        workdir.mkdir()
                        rate = drain(broker, VARIANTS[name], workdir, args.backlog, window)
                        figures.setdefault(f"drain window={window} | {name}", []).append(rate)
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            broker.stop()

    median = {k: statistics.median(v) for k, v in figures.items()}
    print(f"\nresults/s (median of {args.rounds} rounds; {args.results} results steady, "
          f"{args.backlog} backlog)")
    for key, value in median.items():
        print(f"  {key:<48} {value:>9.0f}")
    base = median["steady | memory (no outbox)"]
    print("\nratios")
    for name in VARIANTS:
        print(f"  steady {name:<28} / steady memory   {median[f'steady | {name}'] / base:6.2f}")
    three = {n: median[f"steady 3 pipelines | {n}"] for n in ("memory (no outbox)",
                                                             "sqlite sync=full")}
    print(f"  steady 3 pipelines sqlite full / memory        "
          f"{three['sqlite sync=full'] / three['memory (no outbox)']:6.2f}")
    print(f"  steady sqlite full 3 pipelines / 1 pipeline    "
          f"{three['sqlite sync=full'] / median['steady | sqlite sync=full']:6.2f}"
          "   (group commit: >1 when pipelines share fsyncs)")
    for window in args.window:
        full = median[f"drain window={window} | sqlite sync=full"]
        mem = median[f"drain window={window} | memory (no outbox)"]
        print(f"  drain window={window:<5} sqlite full / memory          {full / mem:6.2f}")
        print(f"  drain window={window:<5} sqlite full / steady sqlite   "
              f"{full / median['steady | sqlite sync=full']:6.2f}")
    print(json.dumps({k: round(v, 1) for k, v in median.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
