"""The real unit file, run by a real systemd, with the real interpreter: does the hardening hold?

No systemd is PID 1 here (containers, CI), so each test boots systemd 252+ as PID 1 of a fresh PID
and mount namespace (`unshare`), with a tmpfs over /run and /var/lib, and a target that starts only
edge-runtime.service. The unit is systemd/edge-runtime.service unchanged, plus a drop-in that
points ExecStart at this checkout's interpreter and sends output to a log file. Everything the
sandbox forbids (seccomp filter, MemoryDenyWriteExecute, address families, read-only file system,
no capabilities) is in force.
"""

from __future__ import annotations

import fcntl
import grp
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import wait_until

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "edge-runtime.service"
SYSTEMD = Path("/lib/systemd/systemd")
PAYLOAD = "/run/edge-test"  # where the service sees the test's files (PrivateTmp hides /tmp)

BOOT = """#!/bin/sh
# PID 1 of a new PID + mount namespace: private /run and /var/lib, then systemd.
set -e
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0755 tmpfs /var/lib
mkdir -p /run/systemd/system
cp -r "$1/units/." /run/systemd/system/
cp -r "$1/payload" {payload}
chmod -R a+rX {payload}
export container=edge-runtime-test
exec {systemd} --system --unit=edge-test.target --log-target=console --log-level=info
"""

TARGET = """[Unit]
Description=edge-runtime sandbox test
DefaultDependencies=no
Wants=edge-runtime.service
"""


def _skip_reason() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux to boot systemd in a namespace"
    if not SYSTEMD.exists() or shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "needs systemd, unshare and nsenter (apt-get install systemd util-linux)"
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount", "--mount-proc", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:  # e.g. a container without CAP_SYS_ADMIN
        return f"cannot create PID and mount namespaces here: {probe.stderr.strip()}"
    return None


def _world_readable(path: Path) -> bool:
    """Can an unprivileged user reach `path` (every parent searchable, the file readable)?"""
    path = path.resolve()
    for parent in [*reversed(path.parents), path]:
        mode = parent.stat().st_mode
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & stat.S_IROTH)


def service_user() -> str:
    """`nobody` when it can run this checkout's interpreter; else root (with no capabilities, as
    CapabilityBoundingSet= is empty), e.g. for a pyenv interpreter under /root."""
    paths = [Path(sys.executable), Path(sys.base_prefix), REPO / "edge_runtime" / "__init__.py"]
    return "nobody" if all(_world_readable(p) for p in paths) else "root"


def _hidden_by(path: Path, roots: tuple[str, ...]) -> bool:
    resolved = str(path.resolve())
    return any(resolved == p or resolved.startswith(p + "/") for p in roots)


def _hidden_by_protect_home(path: Path) -> bool:
    return _hidden_by(path, ("/root", "/home", "/run/user"))


def _hidden_by_private_tmp(path: Path) -> bool:
    return _hidden_by(path, ("/tmp", "/var/tmp"))


def drop_in(exec_args: list[str], log: Path, user: str, extra: tuple[str, ...] = ()) -> str:
    lines = [
        "[Unit]",
        "DefaultDependencies=no",
        "After=",
        "Wants=",
        # What DefaultDependencies=yes would give: stopped (SIGTERM) when the test powers off.
        "Conflicts=shutdown.target",
        "Before=shutdown.target",
        "[Service]",
        "ExecStart=",
        "ExecStart=" + " ".join(exec_args),
        f"Environment=PYTHONPATH={REPO}",
        f"StandardOutput=append:{log}",
        f"StandardError=append:{log}",
        "Restart=no",
        # /etc/edge-runtime would be created on the host: the config comes from the payload.
        "ConfigurationDirectory=",
        f"User={user}",
        *extra,
    ]
    if user == "root":
        lines.append("Group=root")
    # An interpreter or checkout under /root or /home (pyenv, CI clones) would be hidden by
    # ProtectHome=yes: keep them hidden except for exactly those paths, read-only.
    checkout = (Path(sys.base_prefix), Path(sys.prefix), REPO)
    hidden = [p for p in checkout if _hidden_by_protect_home(p)]
    if hidden:
        lines.append("ProtectHome=tmpfs")
    # A checkout under /tmp (a CI clone) is hidden by PrivateTmp=yes in the same way.
    hidden += [p for p in checkout if _hidden_by_private_tmp(p)]
    if hidden:
        lines.append("BindReadOnlyPaths=" + " ".join(str(p.resolve()) for p in hidden))
    return "\n".join(lines) + "\n"


@dataclass
class BootedSystemd:
    pid: int  # systemd's PID on the host
    log: Path

    def systemctl(self, *args: str) -> str:
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-p", "systemctl", *args],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    def show(self, *props: str) -> dict[str, str]:
        out = self.systemctl("show", "edge-runtime.service", "-p", ",".join(props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_state(self, deadline: float = 120) -> dict[str, str]:
        """Poll until the service left 'activating' (it got READY=1, or it failed)."""
        end = time.monotonic() + deadline
        while True:
            state = self.show("ActiveState", "SubState", "StatusText", "Result", "MainPID")
            if state.get("ActiveState") not in (None, "", "activating", "inactive") or time.monotonic() > end:
                return state
            time.sleep(0.2)

    def exec(self, *argv: str) -> str:
        """Run a command in systemd's namespaces (its /run and /var/lib)."""
        return subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-p", *argv],
                              capture_output=True, text=True, timeout=30).stdout

    def service_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def boot_systemd() -> Iterator:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    # Each booted systemd believes it owns the host's cgroup tree (e.g. .../system.slice/
    # edge-runtime.service), so two test runs on one machine must not boot at the same time.
    lock = open("/tmp/edge-runtime-sandbox.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    procs: list[subprocess.Popen[bytes]] = []
    # Not under pytest's tmp_path: boot.sh copies the payload from here, and a 0700 parent would
    # make no difference to root, but a world-readable dir keeps the service user question simple.
    workdir = Path(tempfile.mkdtemp(prefix="edge-runtime-sandbox-"))
    os.chmod(workdir, 0o755)

    def boot(exec_args: list[str], payload: dict[str, bytes], extra: tuple[str, ...] = ()) -> BootedSystemd:
        units = workdir / "units"
        (units / "edge-runtime.service.d").mkdir(parents=True)
        shutil.copy(UNIT, units / "edge-runtime.service")
        log = workdir / "service.log"
        (units / "edge-runtime.service.d" / "test.conf").write_text(
            drop_in(exec_args, log, service_user(), extra))
        (units / "edge-test.target").write_text(TARGET)
        for name, data in payload.items():
            target = workdir / "payload" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (workdir / "payload").mkdir(exist_ok=True)
        script = workdir / "boot.sh"
        script.write_text(BOOT.format(payload=PAYLOAD, systemd=SYSTEMD))
        script.chmod(0o755)
        proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--uts", "--mount-proc", "--propagation", "private",
             str(script), str(workdir)],
            stdout=open(workdir / "systemd.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        end = time.monotonic() + 30
        while True:  # systemd is unshare's only child; wait for its private bus socket
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            if pids:
                booted = BootedSystemd(int(pids[0]), log)
                if "ActiveState" in booted.systemctl("show", "edge-test.target", "-p", "ActiveState"):
                    return booted
            if proc.poll() is not None or time.monotonic() > end:
                pytest.fail("systemd did not boot:\n" + (workdir / "systemd.log").read_text(errors="replace"))
            time.sleep(0.2)

    yield boot
    for proc in procs:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        for pid in children.read_text().split() if children.exists() else []:
            os.kill(int(pid), signal.SIGRTMIN + 4)  # systemd's "poweroff": stops units, then exits
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(workdir, ignore_errors=True)
    lock.close()  # releases the lock


PROBE = b'''
"""Load and run both example models with the runtime the daemon uses, then report READY."""
import mmap, signal, threading, sys
import cv2, numpy as np, paho.mqtt.client as mqtt
from edge_runtime.model.runtime import select_runtime
from edge_runtime.model.tflite_model import TfliteModel
from edge_runtime.supervision.sd_notify import SystemdNotifier

runtime = select_runtime()
image = cv2.imdecode(np.frombuffer(open(sys.argv[1], "rb").read(), np.uint8), cv2.IMREAD_GRAYSCALE)
outputs = []
for path in sys.argv[2:]:
    model = TfliteModel(path, runtime, threads=2)  # two threads: XNNPACK's thread pool too
    spec = model.inputs[0]
    model.set_input(0, np.zeros(spec.shape, dtype=spec.dtype))
    model.invoke()
    outputs.append(int(np.argmax(model.output(0))))
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)  # imports and builds the MQTT client too
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
try:  # MemoryDenyWriteExecute=yes must refuse writable+executable memory
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC).close()
    wx = "allowed"
except PermissionError:
    wx = "denied"
notifier = SystemdNotifier.from_env()
notifier.ready(f"probe ok: {runtime.describe()} image {image.shape} argmax {outputs} wx {wx}")
while not stop.wait(0.5):  # a bare wait() would not run the handler promptly
    pass
notifier.stopping()
'''


def test_hardened_unit_runs_the_interpreter(boot_systemd) -> None:
    digits = REPO / "examples" / "digits"
    sample = sorted((digits / "samples").glob("*.png"))[0]
    booted = boot_systemd(
        [sys.executable, f"{PAYLOAD}/probe.py", f"{PAYLOAD}/sample.png",
         f"{PAYLOAD}/digits_int8.tflite", f"{PAYLOAD}/digits_float.tflite"],
        {
            "probe.py": PROBE,
            "sample.png": sample.read_bytes(),
            "digits_int8.tflite": (digits / "digits_int8.tflite").read_bytes(),
            "digits_float.tflite": (digits / "digits_float.tflite").read_bytes(),
        },
    )
    state = booted.wait_state()
    assert state["ActiveState"] == "active", f"{state}\n{booted.service_log()}"
    assert state["StatusText"].startswith("probe ok"), state
    assert state["StatusText"].endswith("wx denied"), state  # and yet the interpreter ran
    # MainPID is in systemd's PID namespace; the host's view is systemd's only child.
    mainpid = _host_pid_of_service(booted)
    status = Path(f"/proc/{mainpid}/status").read_text()
    assert "Seccomp:\t2" in status and "NoNewPrivs:\t1" in status  # the filters really are on
    assert "CapEff:\t0000000000000000" in status
    assert "Error in cpuinfo" not in booted.service_log()  # XNNPACK needs /proc/cpuinfo


def _host_pid_of_service(booted: BootedSystemd) -> int:
    for child in Path(f"/proc/{booted.pid}/task/{booted.pid}/children").read_text().split():
        return int(child)
    raise AssertionError("service process not found")


def _daemon_payload(port: int) -> dict[str, bytes]:
    """deploy/config.example.toml as installed, pointed at the test's broker and payload paths."""
    digits = REPO / "examples" / "digits"
    config = (REPO / "deploy" / "config.example.toml").read_text()
    config = config.replace("/opt/edge-runtime/examples/digits", PAYLOAD).replace(
        "port = 1883", f"port = {port}").replace('# id = "kitchen-pi"', 'id = "sandbox"')
    config = config.replace("fps = 1", "fps = 10")
    payload = {"config.toml": config.encode(),
               "digits_int8.tflite": (digits / "digits_int8.tflite").read_bytes()}
    for png in sorted((digits / "samples").glob("*.png")):
        payload[f"samples/{png.name}"] = png.read_bytes()
    return payload


def test_daemon_under_the_unit_publishes_and_stops_cleanly(boot_systemd, mosquitto, subscribe) -> None:
    sub = subscribe("edge/sandbox/#")
    booted = boot_systemd([sys.executable, "-m", "edge_runtime", "run", "--config", f"{PAYLOAD}/config.toml"],
                          _daemon_payload(mosquitto.port))
    state = booted.wait_state()
    # "active" only after READY=1: Type=notify worked through the sandbox.
    assert state["ActiveState"] == "active", f"{state}\n{booted.service_log()}"
    wait_until(lambda: len(sub.on("edge/sandbox/digits/result")) >= 3, 60)
    assert sub.on("edge/sandbox/status")[:1] == [b"online"]
    wait_until(lambda: "connected" in booted.show("StatusText")["StatusText"], 30)
    # The outbox went to StateDirectory=, the only writable place.
    assert "outbox.sqlite" in booted.exec("ls", "/var/lib/edge-runtime")
    booted.systemctl("stop", "edge-runtime.service")
    after = booted.show("ActiveState", "Result", "ExecMainStatus")
    assert after == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, (
        f"{after}\n{booted.service_log()}")
    assert sub.on("edge/sandbox/status")[-1] == b"offline"
    assert "Error in cpuinfo" not in booted.service_log()


def test_systemd_restarts_a_daemon_whose_inference_hangs(boot_systemd, mosquitto, subscribe) -> None:
    """The whole chain: a hung worker -> no WATCHDOG=1 -> systemd kills and restarts the daemon."""
    sub = subscribe("edge/sandbox/digits/result")
    booted = boot_systemd(
        [sys.executable, "-m", "edge_runtime", "run", "--config", f"{PAYLOAD}/config.toml"],
        _daemon_payload(mosquitto.port),
        extra=("WatchdogSec=4", "Restart=on-failure", "RestartSec=1",
               "Environment=EDGE_RUNTIME_TEST_STALL_INFERENCE=digits"),
    )
    assert booted.wait_state()["ActiveState"] == "active", booted.service_log()
    wait_until(lambda: sub.on("edge/sandbox/digits/result"), 60)
    wait_until(lambda: int(booted.show("NRestarts").get("NRestarts", "0") or 0) >= 1, 90)
    assert "withholding watchdog pings" in booted.service_log()
    wait_until(lambda: booted.service_log().count("running 1 pipeline") >= 2, 60)  # a new process
    # The restarted daemon is up again (and will hang again: the hook is still set).
    assert booted.wait_state()["ActiveState"] in ("active", "activating"), booted.service_log()


def _children(pid: int) -> list[int]:
    """Child processes of every thread of `pid` (a source thread starts a command's child)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _command_payload(port: int) -> dict[str, bytes]:
    """The installed example config with its source replaced by a camera-like command source:
    ffmpeg writing MJPEG to stdout, as rpicam-vid does on a Pi."""
    payload = _daemon_payload(port)
    config = payload["config.toml"].decode()
    start = config.index("[pipelines.source]")
    end = config.index("[pipelines.model]")
    # After ffmpeg (which a closed pipe ends anyway) the shell lives on as `sleep`: only
    # PR_SET_PDEATHSIG can end it when the daemon dies.
    script = ("ffmpeg -loglevel error -re -f lavfi -i testsrc=size=64x64:rate=5 -f mjpeg -; "
              "exec sleep 600")
    source = f'[pipelines.source]\ntype = "command"\nformat = "mjpeg"\ncommand = ["sh", "-c", "{script}"]\n\n'

    payload["config.toml"] = (config[:start] + source + config[end:]).encode()
    return payload


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (deploy/dev-setup.sh)")
def test_a_command_source_child_runs_under_the_units_sandbox(boot_systemd, mosquitto, subscribe):
    """The child inherits the sandbox (seccomp, no privileges, the device groups), and the
    filter lets the daemon set PR_SET_PDEATHSIG: with KillMode=process (systemd leaves the child
    alone), SIGKILL of the daemon still takes the child with it."""
    sub = subscribe("edge/sandbox/#")
    booted = boot_systemd(
        [sys.executable, "-m", "edge_runtime", "run", "--config", f"{PAYLOAD}/config.toml"],
        _command_payload(mosquitto.port), extra=("KillMode=process",))
    state = booted.wait_state()
    assert state["ActiveState"] == "active", f"{state}\n{booted.service_log()}"
    wait_until(lambda: len(sub.on("edge/sandbox/digits/result")) >= 3, 60)
    daemon = _host_pid_of_service(booted)
    child = wait_until(lambda: _children(daemon), 30)[0]  # the shell the command source started
    ffmpeg = wait_until(lambda: _children(child), 30)[0]
    assert Path(f"/proc/{ffmpeg}/comm").read_text().strip() == "ffmpeg"
    status = _status(ffmpeg)
    assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "1", status
    assert status["CapEff"] == "0000000000000000", status
    groups = {int(g) for g in status["Groups"].split()}
    assert {grp.getgrnam(name).gr_gid for name in ("video", "audio", "dialout")} <= groups, status
    assert Path(f"/proc/{ffmpeg}/cgroup").read_text() == Path(f"/proc/{daemon}/cgroup").read_text()
    os.kill(daemon, signal.SIGKILL)
    wait_until(lambda: not Path(f"/proc/{child}").exists()
               or _status(child).get("State", "").startswith("Z"), 10)
    assert "operation not permitted" not in booted.service_log().lower()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (deploy/dev-setup.sh)")
def test_systemctl_stop_is_no_source_failure_of_a_command(boot_systemd, mosquitto, subscribe):
    """`systemctl stop` under the real unit: SIGTERM reaches the daemon only (KillMode=mixed), which
    stops its command's child itself, so the stop is no "source failed ... retrying" in the log
    and no `source_failures` in the final stats (with the control group killed at once, the
    child died of the same SIGTERM first)."""
    sub = subscribe("edge/sandbox/#")
    booted = boot_systemd(
        [sys.executable, "-m", "edge_runtime", "run", "--config", f"{PAYLOAD}/config.toml"],
        _command_payload(mosquitto.port))
    state = booted.wait_state()
    assert state["ActiveState"] == "active", f"{state}\n{booted.service_log()}"
    wait_until(lambda: len(sub.on("edge/sandbox/digits/result")) >= 3, 60)
    booted.systemctl("stop", "edge-runtime.service")
    wait_until(lambda: b"offline" in sub.on("edge/sandbox/status"), 30)
    final = wait_until(lambda: [s for s in sub.json_on("edge/sandbox/stats")
                                if s["pipelines"]["digits"]["state"] == "stopped"], 10)[-1]
    log = booted.service_log()
    assert "received SIGTERM" in log, log
    assert "source failed" not in log, log
    assert final["pipelines"]["digits"]["source_failures"] == 0, final


def test_a_network_camera_under_the_units_sandbox(boot_systemd, mosquitto, subscribe):
    """An H.264 RTSP camera read by the stream source inside the unit's sandbox: FFmpeg's
    network and decoder code under the system-call filter, the address-family list and
    MemoryDenyWriteExecute=yes."""
    from stream_servers import RtspServer, rtsp_available

    missing = rtsp_available(h264=True)
    if missing:
        pytest.skip(missing)
    camera = RtspServer(h264=True).start()
    try:
        payload = _daemon_payload(mosquitto.port)
        config = payload["config.toml"].decode()
        start, end = config.index("[pipelines.source]"), config.index("[pipelines.model]")
        source = f'[pipelines.source]\ntype = "stream"\nurl = "{camera.url()}"\n\n'
        payload["config.toml"] = (config[:start] + source + config[end:]).encode()
        sub = subscribe("edge/sandbox/#")
        booted = boot_systemd(
            [sys.executable, "-m", "edge_runtime", "run", "--config", f"{PAYLOAD}/config.toml"],
            payload)
        state = booted.wait_state()
        assert state["ActiveState"] == "active", f"{state}\n{booted.service_log()}"
        wait_until(lambda: len(sub.on("edge/sandbox/digits/result")) >= 5, 60)
        result = sub.json_on("edge/sandbox/digits/result")[-1]
        assert (result["source"]["width"], result["source"]["height"]) == (160, 120), result
    finally:
        camera.stop()
