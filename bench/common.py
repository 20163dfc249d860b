"""Shared benchmark parts: a private mosquitto, a counting subscriber, the daemon as a process.

Everything is real: the daemon runs as `python -m edge_runtime run` in its own process and is
measured from the outside, by an MQTT subscriber, the way a user's consumer would see it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # ports.py: servers' ports outside the ephemeral range

from ports import free_port  # noqa: E402


class Broker:
    """mosquitto on a free loopback port, for the length of a `with` block."""

    def __init__(self) -> None:
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="bench-broker-")
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> Broker:
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        "persistence false\nmax_queued_messages 1000000\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self._process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(10)
        self._dir.cleanup()


class Counter:
    """Subscribes to one topic and records each message's arrival time and payload; keeps the
    last message on each of `keep_last` (e.g. the daemon's stats topic)."""

    def __init__(self, port: int, topic: str, qos: int = 1, keep_last: Sequence[str] = ()) -> None:
        self.topic = topic  # may hold wildcards: `topics` says where each message came from
        self.times: list[float] = []
        self.bodies: list[bytes] = []
        self.topics: list[str] = []
        self.last: dict[str, bytes] = {}
        self._ready = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self._client.on_connect = lambda c, *a: c.subscribe([(t, qos) for t in (topic, *keep_last)])
        self._client.on_subscribe = lambda *a: self._ready.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("subscription not acknowledged")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not mqtt.topic_matches_sub(self.topic, msg.topic):
            self.last[msg.topic] = msg.payload
            return
        self.times.append(time.perf_counter())
        self.bodies.append(msg.payload)
        self.topics.append(msg.topic)

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.times) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def wait_for_last(self, topic: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while topic not in self.last and time.monotonic() < deadline:
            time.sleep(0.05)

    def rate(self) -> float:
        """Results per second between the first and the last arrival (start-up excluded)."""
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])

    def timings(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for body in self.bodies:
            for stage, ms in json.loads(body)["timing_ms"].items():
                out.setdefault(stage, []).append(ms)
        return out

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass
class DaemonRun:
    rate: float
    results: int
    peak_rss_mb: float  # VmHWM: the kernel's own peak of the resident set
    timings: dict[str, list[float]] = field(default_factory=dict)
    exit_code: int = 0
    # CPU seconds per thread name (the daemon names its threads for the kernel), last sample
    cpu_s: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)  # the last retained stats message
    first_result_s: float = 0.0  # from process start to the first result received
    arrivals: list[float] = field(default_factory=list)  # perf_counter() of each result
    # the resident set at the largest sample, by kind: anonymous (heap, buffers, the model's
    # bytes) and file-backed (mapped libraries; this part depends on the page cache: evict_from_page_cache)
    rss_split_mb: dict[str, float] = field(default_factory=dict)
    topics: list[str] = field(default_factory=list)  # the topic of each result, in arrival order

    def tail_rate(self, count: int) -> float:
        """Results/s over the last `count` results (e.g. after threads = "auto" has chosen)."""
        tail = self.arrivals[-count:]
        return (len(tail) - 1) / (tail[-1] - tail[0]) if len(tail) > 1 else 0.0

    def interpreter(self, pipeline: str = "bench") -> dict[str, Any]:
        """The pipeline's `interpreter` entry of the last stats message (InvokeMeter)."""
        return self.stats.get("pipelines", {}).get(pipeline, {}).get("interpreter", {})

    def cpu_ms_per_result(self) -> dict[str, float]:
        """Thread name -> CPU ms per result, busiest first (names as `thread_ticks` gives them:
        the main thread's start-up is shared out over the results)."""
        if not self.results:
            return {}
        return {name: s * 1e3 / self.results
                for name, s in sorted(self.cpu_s.items(), key=lambda item: -item[1]) if s > 0}

    def cpu_line(self) -> str:
        """`cpu_ms_per_result` on one line, threads under 0.01 ms left out."""
        return ", ".join(f"{name} {ms:.2f}" for name, ms in self.cpu_ms_per_result().items()
                         if ms >= 0.01)


def write_config(path: Path, port: int, pipeline: dict[str, dict[str, Any]], qos: int = 1) -> Path:
    """A config with one pipeline, named "bench"."""
    return write_pipelines(path, port, {"bench": pipeline}, qos)


def own_cpu() -> int:
    """The CPU a `--cpus` run gives the inference thread: the last one this process may use."""
    return sorted(os.sched_getaffinity(0))[-1]


def with_cpus(pipeline: dict[str, dict[str, Any]], cpus: Sequence[int]) -> dict[str, dict[str, Any]]:
    """`pipeline` with `[pipelines.model] cpus` set (its inference thread on CPUs of its own)."""
    return {**pipeline, "model": {**pipeline["model"], "cpus": list(cpus)}}


def write_pipelines(path: Path, port: int, pipelines: dict[str, dict[str, dict[str, Any]]],
                    qos: int = 1) -> Path:
    """A config with a pipeline per name: {name: {section: {key: value}}}."""
    lines = ["[device]", 'id = "bench"', "[mqtt]", 'host = "127.0.0.1"', f"port = {port}",
             f"qos = {qos}"]
    for name, pipeline in pipelines.items():
        lines += ["[[pipelines]]", f"name = {json.dumps(name)}"]
        for section, values in pipeline.items():
            lines.append(f"[pipelines.{section}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_daemon(config: Path, port: int, expected: int, timeout: float = 600,
               pythonpath: Path = REPO, qos: int = 1, stop_after: int = 0,
               pipeline: str = "bench") -> DaemonRun:
    """Run the daemon on `config` until its file source is done (or, with `stop_after`, until
    that many results arrived: then SIGTERM, for looping sources); count its results.
    `pipeline` "+" counts every pipeline's results (DaemonRun.topics says whose)."""
    # The counter subscribes at QoS 0 (it acknowledges nothing): on a 2-core machine a Python
    # subscriber acking every message would take a core from the daemon it measures.
    stats_topic = "edge/bench/stats"
    counter = Counter(port, f"edge/bench/{pipeline}/result", 0, keep_last=(stats_topic,))
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    env.pop("NOTIFY_SOCKET", None)
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "edge_runtime", "--log-level", "warning",
                                "run", "--config", str(config)], env=env, cwd=pythonpath)
    peak: dict[str, float] = {}
    ticks: dict[str, tuple[str, int]] = {}  # thread id -> (name, CPU ticks at the last sample)
    try:
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            sample = memory_mb(process.pid)
            if sample.get("VmRSS", 0.0) >= peak.get("VmRSS", 0.0):
                peak = sample
            peak["VmHWM"] = max(peak.get("VmHWM", 0.0), sample.get("VmHWM", 0.0))
            ticks.update(thread_ticks(process.pid))
            if stop_after and len(counter.times) >= stop_after:
                process.send_signal(signal.SIGTERM)
                break
            time.sleep(0.05)
        code = process.wait(30)
        counter.wait_for(stop_after or expected, 10)
        counter.wait_for_last(stats_topic, 5)
    finally:
        if process.poll() is None:
            process.kill()
        counter.close()
    cpu: dict[str, float] = {}
    for name, count in ticks.values():
        cpu[name] = cpu.get(name, 0.0) + count / os.sysconf("SC_CLK_TCK")
    stats = json.loads(counter.last[stats_topic]) if stats_topic in counter.last else {}
    first = counter.times[0] - started if counter.times else 0.0
    split = {kind: peak.get(key, 0.0) for kind, key in (("anon", "RssAnon"), ("file", "RssFile"))}
    return DaemonRun(counter.rate(), len(counter.times), peak.get("VmHWM", 0.0),
                     counter.timings(), code, cpu, stats, first, list(counter.times),
                     topics=list(counter.topics), rss_split_mb=split)


def thread_ticks(pid: int) -> dict[str, tuple[str, int]]:
    """Each thread of `pid`: (name, user + system CPU ticks so far). The main thread is "main
    (start-up)" (imports, model loading); a thread the daemon did not name (the interpreter's pool
    at threads > 1) inherits the main thread's kernel name and shows as "<that name> (unnamed)"."""
    out = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        out[task.name] = (name, int(fields[11]) + int(fields[12]))
    main = out.get(str(pid), ("", 0))[0]
    return {tid: ("main (start-up)" if tid == str(pid) else f"{name} (unnamed)" if name == main
                  else name, count) for tid, (name, count) in out.items()}


MEMORY_KEYS = ("VmHWM", "VmRSS", "RssAnon", "RssFile")


def memory_mb(pid: int | str = "self") -> dict[str, float]:
    """VmHWM, VmRSS, RssAnon and RssFile of `pid` in MB, from /proc (empty once it has ended)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in MEMORY_KEYS:
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def evict_from_page_cache(paths: Sequence[Path]) -> int:
    """Drop the page cache's copy of each file (posix_fadvise DONTNEED; pages some process has
    mapped stay). What a file-backed mapping adds to a process's RSS depends on how its pages
    came into the cache: a library pip has just written sits in large folios, and the kernel
    maps a whole folio at a fault (seen here: OpenCV's cv2.abi3.so 21 MB resident just after
    `pip install`, 6 MB once read back from disk). Evicting first measures every process in the
    state a device is in after a reboot. Returns the number of files evicted."""
    count = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            count += 1
        finally:
            os.close(fd)
    return count


def runtime_libraries() -> list[Path]:
    """The shared libraries a daemon or script of this Python may map: every `.so` under its
    site-packages, the standard library's extension modules and libpython."""
    roots = {Path(p) for p in sys.path if p.endswith(("site-packages", "lib-dynload"))}
    libs = [lib for root in roots for lib in root.rglob("*.so*") if lib.is_file()]
    libdir = Path(sys.base_prefix) / "lib"
    return libs + [lib for lib in libdir.glob("libpython*.so*") if lib.is_file()]


def percentiles(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    p50, p99 = np.percentile(np.asarray(values), [50, 99])
    return f"p50 {p50:7.3f} ms  p99 {p99:7.3f} ms"


def invoke_rate(model_path: Path, threads: int, seconds: float = 3.0) -> tuple[float, list[float]]:
    """(a) Invokes/s in a tight loop over a pre-made input, and each invoke's latency in ms."""
    from edge_runtime.model.runtime import select_runtime
    from edge_runtime.model.tflite_model import TfliteModel

    model = TfliteModel(model_path, select_runtime(), threads=threads)
    spec = model.inputs[0]
    rng = np.random.default_rng(0)
    info = np.iinfo(spec.dtype) if np.issubdtype(spec.dtype, np.integer) else None
    data = (rng.integers(info.min, info.max, spec.shape, endpoint=True) if info
            else rng.standard_normal(spec.shape)).astype(spec.dtype)
    model.set_input(0, data)
    for _ in range(5):
        model.invoke()
    latencies = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        model.invoke()
        latencies.append((time.perf_counter() - t0) * 1e3)
    return len(latencies) / (time.perf_counter() - start), latencies


def cpu_summary() -> str:
    """CPUs and load: on a shared machine the load average says how much to trust single rates."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load}, Python {sys.version.split()[0]}"
