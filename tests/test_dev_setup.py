"""deploy/dev-setup.sh for real, into a fresh virtualenv: pip runs once, a second run with nothing
changed (or asking for fewer extras) does not run it, no setuptools warning box, and the checkout
keeps no build output."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEV_SETUP = REPO / "deploy" / "dev-setup.sh"

pytestmark = pytest.mark.slow  # a virtualenv and one pip install of the package (~20 s)


def dev_setup(venv: Path, pip_args: str, extras: str = "") -> subprocess.CompletedProcess[str]:
    # No dependencies (--no-deps, so extras cost nothing): what is under test is the script.
    env = dict(os.environ, EDGE_RUNTIME_VENV=str(venv), EDGE_RUNTIME_EXTRAS=extras,
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


    # Extras accumulate: deploy/run-tests.sh asks for test,convert,plot and deploy/quickstart.sh
    # for none; whichever runs second, and every run after, finds the venv up to date (they do
    # not take turns re-running pip); a new extra installs once, with the ones already there.
    pip_args = "--no-deps --no-compile"
    added = dev_setup(venv, pip_args, extras="plot")
    assert "installing edge-runtime with extras [plot]" in added.stderr, added.stderr
    installed = site_files(venv)
    for extras in ("", "plot"):  # quickstart, then run-tests again
        again = dev_setup(venv, pip_args, extras=extras)
        assert again.returncode == 0, again.stderr
        assert "is up to date" in again.stderr and "installing" not in again.stderr, again.stderr
        assert site_files(venv) == installed
    more = dev_setup(venv, pip_args, extras="tflite")
    assert "installing edge-runtime with extras [plot,tflite]" in more.stderr, more.stderr
    both = dev_setup(venv, pip_args, extras="tflite,plot")
    assert "is up to date" in both.stderr, both.stderr


HOLD_APT_LOCKS = """
import fcntl, os, sys, time
fds = [os.open(path, os.O_RDWR | os.O_CREAT, 0o640) for path in sys.argv[2:]]
for fd in fds:
    fcntl.lockf(fd, fcntl.LOCK_EX)  # as apt locks them (fcntl), waiting for any other holder
print("held", flush=True)
time.sleep(float(sys.argv[1]))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/apt-get").exists(),
                    reason="needs root and apt (Debian), as the set-up itself")
def test_busy_apt_is_waited_for_not_a_failure(tmp_path: Path) -> None:
    """Another apt holds its locks (unattended-upgrades on a Pi's first boot, or a second set-up):
    dev-setup waits for it instead of failing with "Could not get lock". The locks are held for
    real, the way apt holds them; the venv is one dev-setup finds up to date (no pip)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "bin" / "edge-runtime").write_text("")
    (venv / "bin" / "edge-runtime").chmod(0o755)
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    (venv / ".edge-runtime-dev-setup").write_text(f"{digest} pip_args=[]\n\n")
    env = dict(os.environ, EDGE_RUNTIME_VENV=str(venv), EDGE_RUNTIME_EXTRAS="",
               EDGE_RUNTIME_PIP_ARGS="", EDGE_RUNTIME_APT_PACKAGES="mosquitto")
    done = while_apt_is_busy(["bash", str(DEV_SETUP)], env)
    assert done.returncode == 0, done.stderr
    assert "apt is busy" in done.stderr and "waiting" in done.stderr, done.stderr
    assert "is up to date" in done.stderr, done.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/apt-get").exists(),
                    reason="needs root and apt (Debian), as the set-up itself")
def test_install_sh_updates_the_lists_through_a_busy_apt_too() -> None:
    """install.sh installs what a device lacks; when apt cannot find a package (stale lists, or
    none yet on a fresh image) it updates the lists and tries again. That update waits for a busy
    apt too (install.sh had its own copy, which failed at once with "Could not get lock").
    Provoked with a package that does not exist, so the install fails both times, while another
    apt holds the lists lock only (an `apt-get update` of unattended-upgrades)."""
    missing = "edge-runtime-no-such-package"
    done = while_apt_is_busy(
        ["bash", "-c", 'set -euo pipefail; . "$1"; apt_install_fresh "$2"', "install.sh",
         str(REPO / "deploy" / "apt.sh"), missing], dict(os.environ),
        locks=("/var/lib/apt/lists/lock",))
    assert done.returncode != 0
    assert "install.sh: apt is busy" in done.stderr, done.stderr  # it waited for the lists lock
    assert f"Unable to locate package {missing}" in done.stderr, done.stderr  # then tried again
    assert "apt_install_fresh" in (REPO / "deploy" / "install.sh").read_text()


APT_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock")


def while_apt_is_busy(argv: list[str], env: dict[str, str],
                      locks: tuple[str, ...] = APT_LOCKS) -> subprocess.CompletedProcess[str]:
    """Run `argv` while another process holds apt's dpkg and lists locks (`locks`) for 4 s."""
    holder = subprocess.Popen(["/usr/bin/python3", "-c", HOLD_APT_LOCKS, "4", *locks],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    finally:
        holder.kill()
        holder.wait(10)


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/apt-get").exists(),
                    reason="needs root and apt (Debian), as the set-up itself")
def test_arm64_host_tools_wait_for_a_busy_apt_too() -> None:
    """deploy/arm64/lib.sh (and sample-videos.sh) install with dev-setup's helpers from
    deploy/apt.sh, so they wait for a busy apt too (they failed at once); run here through
    lib.sh, sourced as test-arm64.sh sources it, with a package that is installed."""
    lib = REPO / "deploy" / "arm64" / "lib.sh"
    done = while_apt_is_busy(
        ["bash", "-c", 'set -euo pipefail; . "$1"; apt_update; apt_install mosquitto',
         "test-arm64.sh", str(lib)], dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert "test-arm64.sh: apt is busy" in done.stderr, done.stderr
