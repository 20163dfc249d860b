"""deploy/ansible: syntax, a dry run (--check) of both playbooks against this machine, and the
config template rendered for real and loaded by `edge-runtime check`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_DIR = REPO / "deploy" / "ansible"
ROLE = ANSIBLE_DIR / "roles" / "edge_runtime"


def _ansible_tool(name: str) -> str | None:
    """ansible-core lives in its own virtualenv (deploy/dev-setup.sh makes .venv-ansible)."""
    candidates = [
        Path(os.environ["EDGE_RUNTIME_ANSIBLE_BIN"]) / name if "EDGE_RUNTIME_ANSIBLE_BIN" in os.environ
        else None,
        Path(sys.executable).parent / name,
        REPO / ".venv-ansible" / "bin" / name,
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return shutil.which(name)


PLAYBOOK = _ansible_tool("ansible-playbook")
ANSIBLE = _ansible_tool("ansible")
pytestmark = pytest.mark.skipif(PLAYBOOK is None, reason="ansible-core not installed (deploy/dev-setup.sh)")


def ansible(*args: str, tool: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=os.environ.get("TMPDIR", "/tmp"))
    return subprocess.run([tool or PLAYBOOK, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ANSIBLE_DIR, env=env)


@pytest.fixture
def local_inventory(tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"children": {"edge_devices": {"hosts": {"localhost": {
        "ansible_connection": "local",
        # The apt module needs python3-apt, which only Debian's own interpreter has.
        "ansible_python_interpreter": "/usr/bin/python3",
        "edge_runtime_device_id": "test-pi",
        "edge_runtime_mqtt_host": "broker.test",
    }}}}}}))
    return inventory


def test_syntax_check_with_the_example_inventory() -> None:
    result = ansible("-i", "inventory.example.yml", "--syntax-check", "site.yml", "update-model.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_install_dry_run_against_this_machine(local_inventory: Path) -> None:
    if not Path("/usr/bin/python3").exists():
        pytest.skip("needs Debian's /usr/bin/python3")
    before = {p: Path(p).exists() for p in ("/etc/edge-runtime", "/opt/edge-runtime")}
    result = ansible("-i", str(local_inventory), "site.yml", "--check", "--diff")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "failed=0" in out
    # The per-host variables reach the rendered config (shown by --diff).
    assert 'id = "test-pi"' in out and 'host = "broker.test"' in out
    # A dry run changes nothing on the machine.
    assert before == {p: Path(p).exists() for p in before}


def test_model_update_dry_run(local_inventory: Path) -> None:
    result = ansible("-i", str(local_inventory), "update-model.yml", "--check",
                     "-e", f"model_src={REPO / 'examples/digits/digits_float.tflite'}",
                     "-e", "model_dest=/var/lib/edge-runtime/models/door.tflite")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Install the new model" in out and "failed=0" in out


def test_model_update_refuses_without_arguments(local_inventory: Path) -> None:
    result = ansible("-i", str(local_inventory), "update-model.yml", "--check")
    assert result.returncode != 0
    assert "model_src" in result.stdout


def test_config_template_renders_a_config_the_daemon_accepts(tmp_path: Path) -> None:
    """The porch host of the example inventory (camera, lists, TLS), rendered by Ansible itself."""
    assert ANSIBLE is not None
    dest = tmp_path / "config.toml"
    ca = tmp_path / "ca.crt"
    ca.write_text("not checked by `check`\n")
    extra = {
        "edge_runtime_device_id": "porch",
        "edge_runtime_mqtt_host": "192.168.1.20",
        "edge_runtime_mqtt_port": 8883,
        "edge_runtime_mqtt_tls_ca_file": str(ca),
        "edge_runtime_topic_prefix": "edge",
        "edge_runtime_mqtt_qos": 1,
        "edge_runtime_mqtt_username": "",
        "edge_runtime_mqtt_password_file": "",
        "edge_runtime_log_level": "debug",
        "edge_runtime_outbox": {"max_messages": 20000, "sync": "normal"},
        "edge_runtime_stats": {"interval": 60},
        "edge_runtime_retry": {"broker": {"min_delay": 2, "max_delay": 120}},
        "edge_runtime_pipelines": [
            {"name": "door",
             "source": {"type": "camera", "device": "/dev/video0", "width": 640, "height": 480, "fps": 5},
             "model": {"path": str(REPO / "examples/digits/digits_int8.tflite"), "threads": 4},
             "postprocess": {"top_k": 1, "threshold": 0.6}},
            {"name": "float",
             "source": {"type": "images", "path": str(REPO / "examples/digits/samples"), "loop": True},
             "model": {"path": str(REPO / "examples/digits/digits_float.tflite")},
             "preprocess": {"color": "gray", "mean": [0.0], "std": [255.0]}},
        ],
    }
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(extra))
    result = ansible("localhost", "-c", "local", "-m", "ansible.builtin.template",
                     "-a", f"src={ROLE / 'templates/config.toml.j2'} dest={dest}",
                     "-e", f"@{vars_file}", tool=ANSIBLE)
    assert result.returncode == 0, result.stdout + result.stderr
    config = tomllib.loads(dest.read_text())
    assert config["device"]["id"] == "porch"
    assert config["mqtt"]["tls"] == {"ca_file": str(ca)} and config["mqtt"]["port"] == 8883
    assert config["pipelines"][1]["source"]["loop"] is True
    assert config["pipelines"][1]["preprocess"]["std"] == [255.0]
    assert config["outbox"] == {"max_messages": 20000, "sync": "normal"}
    assert config["stats"] == {"interval": 60}
    assert config["retry"] == {"broker": {"min_delay": 2, "max_delay": 120}}
    check = subprocess.run([sys.executable, "-m", "edge_runtime", "check", "--config", str(dest)],
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert check.returncode == 0, check.stdout + check.stderr
