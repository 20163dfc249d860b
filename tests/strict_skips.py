"""A pytest plugin (loaded by conftest.py): after deploy/run-tests.sh has run the set-up, a test
that skips because something the set-up installs is missing fails instead.

Tests that need a tool (ffmpeg, alsa-utils' WAVs, strace, ruff, ansible-core) skip when run
outside the set-up, and say which script installs it: "... (deploy/dev-setup.sh)". Once
run-tests.sh has run that script it sets EDGE_RUNTIME_SETUP_DONE=1, and such a skip means the
set-up broke: the test run must not pass with the check silently gone. Skips for what the set-up
does not promise (no Home Assistant harness beside the checkout, tflite-runtime off Python 3.11,
a kernel without overlayfs) stay skips.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import pytest

SETUP_SCRIPT = "deploy/dev-setup.sh"  # what a skip reason names when the set-up installs it
SETUP_DONE = "EDGE_RUNTIME_SETUP_DONE"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get(SETUP_DONE) != "1":
        return
    if isinstance(report.longrepr, tuple) and SETUP_SCRIPT in str(report.longrepr[2]):
        report.outcome = "failed"
        report.longrepr = (f"skipped after {SETUP_SCRIPT} ran ({SETUP_DONE}=1), which installs "
                           f"what this test needs: {report.longrepr[2]}")
