"""deploy/dev-setup.sh for real, into a fresh virtualenv: pip runs once, a second run with nothing
changed does not run it, no setuptools warning box, and the checkout keeps no build output."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEV_SETUP = REPO / "deploy" / "dev-setup.sh"

pytestmark = pytest.mark.slow  # a virtualenv and one pip install of the package (~20 s)


def dev_setup(venv: Path, pip_args: str) -> subprocess.CompletedProcess[str]:
    # No extras and no dependencies: what is under test is the script, not the packages.
    env = dict(os.environ, EDGE_RUNTIME_VENV=str(venv), EDGE_RUNTIME_EXTRAS="",
               EDGE_RUNTIME_PIP_ARGS=pip_args)
    return subprocess.run(["bash", str(DEV_SETUP)], capture_output=True, text=True, timeout=600,
                          env=env)


def site_files(venv: Path) -> dict[str, int]:
    """Every file pip wrote for the package, with its modification time."""
    site = next(venv.glob("lib/python3.*/site-packages"))
    return {str(p): p.stat().st_mtime_ns for p in site.iterdir()
            if p.name.startswith(("edge_runtime", "__editable__"))}


def test_second_run_does_not_run_pip_and_a_changed_install_does(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    leftovers_before = sorted(REPO.glob("*.egg-info"))
    first = dev_setup(venv, "--no-deps")
    assert first.returncode == 0, first.stderr
    assert "installing edge-runtime" in first.stderr
    assert "Editable installation" not in first.stderr and "Please be careful" not in first.stderr
    assert (venv / "bin" / "edge-runtime").exists()
    installed = site_files(venv)
    assert any("dist-info" in name for name in installed), installed
    # setuptools' scratch metadata is not left in the checkout (unless it was there before).
    if not leftovers_before:
        assert not list(REPO.glob("*.egg-info"))

    second = dev_setup(venv, "--no-deps")
    assert second.returncode == 0, second.stderr
    assert "is up to date" in second.stderr, second.stderr
    assert "installing edge-runtime" not in second.stderr, second.stderr
    assert site_files(venv) == installed  # pip did not touch the venv

    # Other pip options (like other extras or a changed pyproject.toml) install again.
    third = dev_setup(venv, "--no-deps --no-compile")
    assert third.returncode == 0, third.stderr
    assert "installing edge-runtime" in third.stderr
    assert site_files(venv) != installed
