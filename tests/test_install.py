"""deploy/install.sh and deploy/uninstall.sh into a temporary root, for real: a real virtualenv,
a real pip install of this checkout, then the installed daemon run on the installed example."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import wait_until
from edge_runtime.config.schema import default_device_id
from edge_runtime.homeassistant.discovery import object_id

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "deploy" / "install.sh"
UNINSTALL = REPO / "deploy" / "uninstall.sh"
SCRIPTS = [INSTALL, UNINSTALL, REPO / "deploy/dev-setup.sh", REPO / "deploy/quickstart.sh",
           REPO / "deploy/apt.sh", REPO / "deploy/sample-videos.sh",
           *sorted((REPO / "deploy" / "ansible").rglob("*.sh"))]


def run(script: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def python_version() -> tuple[int, int]:
    out = subprocess.run(["python3", "-c", "import sys; print(*sys.version_info[:2])"],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this checkout as a fresh clone has it (no build output), to install from."""
    copy = tmp_path_factory.mktemp("checkout") / "edge-runtime"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "__pycache__", "build", "*.egg-info", ".hypothesis", ".pytest_cache",
        ".cache", "tests", "bench"))
    return copy


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, checkout: Path) -> Path:
    """Installed twice into the same root; the user's config edit between the runs must survive."""
    root = tmp_path_factory.mktemp("root")
    install = checkout / "deploy/install.sh"
    first = run(install, "--root", str(root))
    assert first.returncode == 0, first.stderr
    config = root / "etc/edge-runtime/config.toml"
    config.write_text(config.read_text() + "\n# edited by the user\n")
    init = next((root / "opt/edge-runtime/venv/lib").glob("python3.*/site-packages/edge_runtime/__init__.py"))
    before = init.stat().st_mtime_ns
    second = run(install, "--root", str(root))
    assert second.returncode == 0, second.stderr
    assert "keeping existing" in second.stderr
    assert init.stat().st_mtime_ns > before  # upgraded in place: the package was reinstalled
    # pip built a copy of the sources: the checkout has no build output.
    assert not (checkout / "build").exists() and not list(checkout.glob("*.egg-info"))
    return root


def test_scripts_are_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    result = subprocess.run([shellcheck, "--severity=style", *map(str, SCRIPTS)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("args", [["--runtime", "onnx"], ["--device-id", "a/b"], ["--frobnicate"]])
def test_bad_arguments_are_refused_before_anything_happens(tmp_path: Path, args: list[str]) -> None:
    result = run(INSTALL, "--root", str(tmp_path / "r"), *args)
    assert result.returncode == 2, result.stderr
    assert not (tmp_path / "r" / "opt").exists()


def test_layout(installed: Path) -> None:
    opt, etc = installed / "opt/edge-runtime", installed / "etc/edge-runtime"
    unit = installed / "etc/systemd/system/edge-runtime.service"
    assert unit.read_text() == (REPO / "systemd/edge-runtime.service").read_text()
    wants = installed / "etc/systemd/system/multi-user.target.wants/edge-runtime.service"
    if shutil.which("systemctl"):  # enabled offline, as for an image build
        assert os.readlink(wants) == "/etc/systemd/system/edge-runtime.service"
    assert (etc / "config.toml").read_text().startswith(
        (REPO / "deploy/config.example.toml").read_text())
    assert (etc / "config.toml").read_text().endswith("# edited by the user\n")
    assert "EDGE_RUNTIME_BACKEND=ai-edge-litert" in (etc / "environment").read_text()
    assert (etc.stat().st_mode & 0o777) == 0o750
    assert ((installed / "var/lib/edge-runtime").stat().st_mode & 0o777) == 0o750
    assert (opt / "examples/digits/digits_int8.tflite").is_file()
    assert len(list((opt / "examples/digits/samples").glob("*.png"))) == 20
    version = subprocess.run([str(opt / "venv/bin/edge-runtime"), "--version"], capture_output=True,
                             text=True, check=True).stdout
    assert version.startswith("edge-runtime ")
    # A real virtualenv: its own site-packages, the system Python untouched (PEP 668).
    cfg = (opt / "venv/pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg


def _installed_config(installed: Path, tmp_path: Path, port: int) -> Path:
    """The installed config as the device sees it, with paths moved under the test root."""
    text = (installed / "etc/edge-runtime/config.toml").read_text()
    text = text.replace("/opt/edge-runtime", str(installed / "opt/edge-runtime"))
    text = text.replace("port = 1883", f"port = {port}")
    config = tmp_path / "config.toml"
    config.write_text(text)
    return config


def test_installed_daemon_runs_the_example_config_out_of_the_box(installed: Path, tmp_path: Path,
                                                                 mosquitto, subscribe) -> None:
    config = _installed_config(installed, tmp_path, mosquitto.port)
    venv = installed / "opt/edge-runtime/venv/bin"
    env = {"PATH": os.environ["PATH"], "EDGE_RUNTIME_BACKEND": "ai-edge-litert",
           "STATE_DIRECTORY": str(installed / "var/lib/edge-runtime")}
    check = subprocess.run([str(venv / "edge-runtime"), "check", "--config", str(config)],
                           capture_output=True, text=True, timeout=120, env=env)
    assert check.returncode == 0, check.stderr
    sub = subscribe("edge/+/digits/result")
    log = open(tmp_path / "daemon.log", "wb")
    daemon = subprocess.Popen([str(venv / "edge-runtime"), "run", "--config", str(config)],
                              stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        wait_until(lambda: sub.messages, 60)  # the demo pipeline publishes (once a second)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, (tmp_path / "daemon.log").read_text()
    topic, payload, _ = sub.messages[0]
    assert topic.endswith("/digits/result") and b'"classes"' in payload
    # The outbox went to the state directory, as under systemd.
    assert (installed / "var/lib/edge-runtime/outbox.sqlite").exists()


def test_switching_to_tflite_runtime(installed: Path, checkout: Path, tmp_path: Path) -> None:
    if python_version() != (3, 11):
        pytest.skip("tflite-runtime wheels exist for Python 3.11 only")
    result = run(checkout / "deploy/install.sh", "--root", str(installed), "--runtime", "tflite-runtime")
    assert result.returncode == 0, result.stderr
    assert "EDGE_RUNTIME_BACKEND=tflite-runtime" in (installed / "etc/edge-runtime/environment").read_text()
    config = _installed_config(installed, tmp_path, 1883)
    check = subprocess.run(
        [str(installed / "opt/edge-runtime/venv/bin/edge-runtime"), "check", "--config", str(config)],
        capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "EDGE_RUNTIME_BACKEND": "tflite-runtime"})
    assert check.returncode == 0, check.stderr
    assert "tflite-runtime 2.14" in check.stdout


def test_uninstall_removes_the_home_assistant_entities(installed: Path, tmp_path: Path,
                                                      mosquitto, subscribe) -> None:
    """Runs before the test below, which needs the installed tree gone anyway."""
    config = installed / "etc/edge-runtime/config.toml"
    original = config.read_text()
    text = _installed_config(installed, tmp_path, mosquitto.port).read_text()
    config.write_text(text + "\n[homeassistant]\ndiscovery = true\n")
    found = re.search(r'(?m)^id = "([^"]+)"', text)
    device = found.group(1) if found else default_device_id()
    topic = f"homeassistant/device/{object_id(device)}/config"
    seen = subscribe("homeassistant/device/+/config")
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    publisher.publish(topic, b'{"dev": {"ids": ["x"]}}', qos=1, retain=True).wait_for_publish(5)
    publisher.disconnect()
    publisher.loop_stop()
    try:
        result = run(UNINSTALL, "--root", str(installed))
        assert result.returncode == 0, result.stderr
        assert "removed the Home Assistant device" in result.stderr, result.stderr
        wait_until(lambda: seen.on(topic) and seen.on(topic)[-1] == b"", 10)
    finally:
        config.write_text(original)


def test_uninstall_keeps_config_and_state_then_purge_removes_them(installed: Path) -> None:
    state = installed / "var/lib/edge-runtime"
    (state / "marker").write_text("undelivered results live here")
    result = run(UNINSTALL, "--root", str(installed))
    assert result.returncode == 0, result.stderr
    assert not (installed / "opt/edge-runtime").exists()
    assert f"removed the service and {installed}/opt/edge-runtime" in result.stderr  # not /opt
    assert not (installed / "etc/systemd/system/edge-runtime.service").exists()
    assert not (installed / "etc/systemd/system/multi-user.target.wants/edge-runtime.service").is_symlink()
    assert (installed / "etc/edge-runtime/config.toml").exists()
    assert (state / "marker").exists()
    result = run(UNINSTALL, "--root", str(installed), "--purge")
    assert result.returncode == 0, result.stderr
    assert not (installed / "etc/edge-runtime").exists() and not state.exists()
    again = run(UNINSTALL, "--root", str(installed), "--purge")  # idempotent too
    assert again.returncode == 0, again.stderr
