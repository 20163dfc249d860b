"""install.sh as on a device, then a rolling model update with Ansible, against a real systemd.

A systemd is booted as PID 1 of fresh PID and mount namespaces (as in test_systemd_sandbox.py), with
copy-on-write overlays over /etc, /opt and /var: install.sh runs in its normal (not --root) mode
and really creates the user, the folders, the virtualenv (from Debian's /usr/bin/python3), enables
and starts the unit, all inside the overlays, so the host is untouched. Then update-model.yml runs
there for real: a good model goes online, a broken one is rolled back.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Broker, Subscriber, wait_until
from test_ansible import _ansible_tool
from test_systemd_sandbox import SYSTEMD, BootedSystemd, _skip_reason

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "examples" / "digits"
MODEL = "/opt/edge-runtime/examples/digits/digits_int8.tflite"  # the installed config's model

BOOT = """#!/bin/sh
set -e
work="$1"
mount -t tmpfs -o mode=0755 tmpfs /run
for dir in etc opt var; do
    mkdir -p "$work/$dir-upper" "$work/$dir-work"
    mount -t overlay overlay -o "lowerdir=/$dir,upperdir=$work/$dir-upper,workdir=$work/$dir-work" "/$dir"
done
mkdir -p /run/systemd/system/edge-runtime.service.d
cp "$work/edge-test.target" /run/systemd/system/
cp "$work/test.conf" /run/systemd/system/edge-runtime.service.d/
export container=edge-runtime-test
exec {systemd} --system --unit=edge-test.target --log-target=console --log-level=info
"""

# Only for the test's systemd: keep the unit's DefaultDependencies (sysinit.target and friends:
# udev, sysctl, clock) from touching the host, send output to a file, stop on poweroff.
DROP_IN = """[Unit]
DefaultDependencies=no
Conflicts=shutdown.target
Before=shutdown.target
[Service]
StandardOutput=append:{log}
StandardError=append:{log}
"""


def _overlay_works() -> bool:
    work = Path(tempfile.mkdtemp(prefix="edge-runtime-overlay-probe-"))
    try:
        for sub in ("upper", "work", "mnt"):
            (work / sub).mkdir()
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir=/etc,upperdir={work}/upper,workdir={work}/work", str(work / "mnt")],
            capture_output=True)
        return result.returncode == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class Device:
    systemd: BootedSystemd
    broker: Broker
    workdir: Path

    def run(self, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """A command inside the device (its mounts and PIDs), with this environment (pip config)."""
        return subprocess.run(["nsenter", "-t", str(self.systemd.pid), "-m", "-p", "--", *argv],
                              capture_output=True, text=True, timeout=timeout, env=dict(os.environ))

    def path(self, path: str) -> Path:
        """A file as the device sees it."""
        return Path(f"/proc/{self.systemd.pid}/root{path}")

    def online(self) -> bool:
        sub = Subscriber(self.broker, ["edge/sandbox/status"])
        try:
            wait_until(lambda: sub.on("edge/sandbox/status"), 10)
            return sub.on("edge/sandbox/status")[-1] == b"online"
        finally:
            sub.close()


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Device]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    if subprocess.run(["/usr/bin/python3", "-c", "import ensurepip, venv"], capture_output=True).returncode:
        pytest.skip("needs Debian's /usr/bin/python3 with venv (apt-get install python3-venv)")
    if not _overlay_works():
        pytest.skip("overlayfs mounts are not possible here")
    broker_dir = tmp_path_factory.mktemp("broker")
    broker = Broker(broker_dir)
    broker.start()
    lock = open("/tmp/edge-runtime-sandbox.lock", "w")  # one booted systemd per machine
    fcntl.flock(lock, fcntl.LOCK_EX)
    workdir = Path(tempfile.mkdtemp(prefix="edge-runtime-device-"))
    (workdir / "edge-test.target").write_text(
        "[Unit]\nDescription=edge-runtime device test\nDefaultDependencies=no\n")
    (workdir / "test.conf").write_text(DROP_IN.format(log=workdir / "service.log"))
    script = workdir / "boot.sh"
    script.write_text(BOOT.format(systemd=SYSTEMD))
    script.chmod(0o755)
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount", "--uts", "--mount-proc",
                             "--propagation", "private", str(script), str(workdir)],
                            stdout=open(workdir / "systemd.log", "wb"), stderr=subprocess.STDOUT)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    try:
        def booted() -> BootedSystemd | None:
            if proc.poll() is not None:
                raise AssertionError((workdir / "systemd.log").read_text(errors="replace"))
            pids = children.read_text().split() if children.exists() else []
            if not pids:
                return None
            candidate = BootedSystemd(int(pids[0]), workdir / "service.log")
            return candidate if "ActiveState=active" in candidate.systemctl(
                "show", "edge-test.target", "-p", "ActiveState") else None

        yield Device(wait_until(booted, 30), broker, workdir)
    finally:
        for pid in children.read_text().split() if children.exists() else []:
            os.kill(int(pid), signal.SIGRTMIN + 4)  # poweroff: stops the service, systemd exits
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        lock.close()


@pytest.fixture(scope="module")
def installed(device: Device) -> Device:
    result = device.run("bash", str(REPO / "deploy/install.sh"), "--python", "/usr/bin/python3",
                        "--device-id", "sandbox")
    assert result.returncode == 0, result.stderr[-5000:]
    assert "started:" in result.stderr
    # Point the installed config at the test broker and restart, as an admin would.
    config = device.path("/etc/edge-runtime/config.toml")
    config.write_text(config.read_text().replace("port = 1883", f"port = {device.broker.port}"))
    device.systemd.systemctl("restart", "edge-runtime.service")
    return device


def test_install_creates_user_and_runs_the_real_unit(installed: Device) -> None:
    state = installed.systemd.wait_state()
    assert state["ActiveState"] == "active", f"{state}\n{installed.systemd.service_log()}"
    passwd = installed.path("/etc/passwd").read_text()
    assert any(line.startswith("edge-runtime:") and line.endswith(":/usr/sbin/nologin")
               for line in passwd.splitlines())
    assert "edge-runtime" not in Path("/etc/passwd").read_text()  # the host is untouched
    assert installed.systemd.show("User")["User"] == "edge-runtime"
    assert "multi-user.target" in installed.systemd.show("WantedBy")["WantedBy"]  # enabled
    wait_until(installed.online, 60)
    # The outbox is in the state directory, owned by the service user.
    outbox = installed.path("/var/lib/edge-runtime/outbox.sqlite")
    wait_until(outbox.exists, 30)
    assert outbox.stat().st_uid == installed.path("/var/lib/edge-runtime").stat().st_uid != 0


def _playbook(device: Device, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    playbook = _ansible_tool("ansible-playbook")
    if playbook is None:
        pytest.skip("ansible-core not installed (deploy/dev-setup.sh)")
    inventory = device.workdir / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"edge_devices": {"hosts": {"localhost": {
        "ansible_connection": "local",
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_become": False,  # already root; no sudo needed
        "edge_runtime_device_id": "sandbox",
        "edge_runtime_mqtt_host": "127.0.0.1",
        "edge_runtime_mqtt_port": device.broker.port,
        "edge_runtime_online_timeout": 30,
        "edge_runtime_settle_seconds": 3,
    }}}}}}))
    return device.run(
        "env", f"ANSIBLE_CONFIG={REPO / 'deploy/ansible/ansible.cfg'}", "ANSIBLE_NOCOLOR=1",
        playbook, "-i", str(inventory), str(REPO / "deploy/ansible" / name), *args, timeout=600)


def _update(device: Device, model: Path) -> subprocess.CompletedProcess[str]:
    return _playbook(device, "update-model.yml", "-e", f"model_src={model}", "-e", f"model_dest={MODEL}")


def _host_has_packages(*names: str) -> bool:
    # The overlays cover /etc, /opt and /var, not /usr: apt must have nothing to install.
    return subprocess.run(["dpkg", "-s", *names], capture_output=True).returncode == 0


def test_site_playbook_converges_on_an_installed_device_and_is_idempotent(installed: Device) -> None:
    if not _host_has_packages("python3-venv", "mosquitto-clients"):
        pytest.skip("the role would apt-get install into the host's /usr")
    first = _playbook(installed, "site.yml")
    assert first.returncode == 0, first.stdout[-6000:]
    assert "Verify edge-runtime" in first.stdout  # the config changed: restarted and verified
    config = installed.path("/etc/edge-runtime/config.toml").read_text()
    assert "Ansible managed" in config and 'id = "sandbox"' in config
    assert installed.online()
    second = _playbook(installed, "site.yml")
    assert second.returncode == 0, second.stdout[-6000:]
    assert " changed=0 " in second.stdout, second.stdout[-6000:]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rolling_update_installs_a_good_model(installed: Device) -> None:
    new = DIGITS / "digits_float.tflite"
    pid_before = installed.systemd.show("MainPID")["MainPID"]
    result = _update(installed, new)
    assert result.returncode == 0, result.stdout[-6000:]
    assert _sha(installed.path(MODEL)) == _sha(new)
    assert installed.path(MODEL + ".previous").exists()
    assert installed.systemd.show("MainPID")["MainPID"] != pid_before  # restarted
    assert installed.systemd.show("ActiveState")["ActiveState"] == "active"
    assert installed.online()


def test_rolling_update_rolls_back_a_broken_model(installed: Device, tmp_path: Path) -> None:
    good = _sha(installed.path(MODEL))
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"TFL3" + os.urandom(2000))  # not a model: `edge-runtime check` refuses it
    result = _update(installed, broken)
    assert result.returncode != 0, result.stdout[-6000:]
    assert "rolled back to the previous" in result.stdout, result.stdout[-6000:]
    assert _sha(installed.path(MODEL)) == good
    assert installed.systemd.show("ActiveState")["ActiveState"] == "active"
    assert installed.online()
