"""Without mosquitto the suite stops at collection with one error naming it (not N failures)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO, daemon_env


def test_missing_mosquitto_is_one_error_at_collection():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--collect-only",
         "tests/test_daemon_e2e.py"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env=daemon_env(EDGE_RUNTIME_TEST_MOSQUITTO="/nonexistent/mosquitto"))
    output = done.stdout + done.stderr
    assert done.returncode == 4, output  # pytest's usage error: nothing ran
    assert output.count("mosquitto is not installed") == 1, output
    assert "deploy/dev-setup.sh" in output
