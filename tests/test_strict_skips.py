"""strict_skips.py: after the set-up, a skip naming deploy/dev-setup.sh fails the run; other
skips, and every skip outside the set-up, stay skips. Runs pytest itself on a small test file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

SAMPLE = '''
import pytest

def test_needs_a_tool():
    pytest.skip("frobnicate not installed (deploy/dev-setup.sh)")

@pytest.mark.skipif(True, reason="needs ffmpeg (deploy/dev-setup.sh)")
def test_marked():
    pass

def test_not_promised():
    pytest.skip("no Home Assistant harness beside the checkout")
'''


def run_sample(tmp_path: Path, setup_done: bool) -> str:
    (tmp_path / "test_sample.py").write_text(SAMPLE, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO / "tests"))
    env.pop("EDGE_RUNTIME_SETUP_DONE", None)
    if setup_done:
        env["EDGE_RUNTIME_SETUP_DONE"] = "1"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "strict_skips", "-p",
                           "no:cacheprovider", "-rA", str(tmp_path / "test_sample.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    return done.stdout


def test_after_the_setup_a_promised_tool_missing_fails(tmp_path: Path) -> None:
    out = run_sample(tmp_path, setup_done=True)
    # a skip in the test fails it; a skip mark (raised while setting up) errors it
    assert "1 failed, 1 skipped, 1 error" in out, out
    assert "FAILED test_sample.py::test_needs_a_tool" in out and \
        "ERROR test_sample.py::test_marked" in out, out
    assert "frobnicate not installed" in out and "EDGE_RUNTIME_SETUP_DONE=1" in out


def test_outside_the_setup_every_skip_stays_a_skip(tmp_path: Path) -> None:
    out = run_sample(tmp_path, setup_done=False)
    assert "3 skipped" in out, out
