"""Test-only fault injection, off unless its environment variable is set.

EDGE_RUNTIME_TEST_STALL_INFERENCE=<pipeline name> makes that pipeline's interpreter hang on its
second invoke (after one good result), the way a wedged delegate or driver hangs: the thread sits
inside the call, beats no heartbeat and is never released. The systemd watchdog test uses it to
prove that a hung worker stops the WATCHDOG=1 pings. Nothing else reads this variable.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

logger = logging.getLogger(__name__)

STALL_INFERENCE_ENV = "EDGE_RUNTIME_TEST_STALL_INFERENCE"


class _Part(Protocol):
    config: Any
    model: Any


def _hang_after_first(invoke: Callable[[], None], name: str) -> Callable[[], None]:
    calls = 0
    never = threading.Event()

    def invoke_then_hang() -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            logger.warning("%s: pipeline %s hangs inside invoke now (test hook)", STALL_INFERENCE_ENV, name)
            never.wait()  # never set: this thread is stuck for good, like a hung interpreter
        invoke()

    return invoke_then_hang


def install_stall_hooks(parts: Iterable[_Part], environ: Mapping[str, str] | None = None) -> None:
    """Apply $EDGE_RUNTIME_TEST_STALL_INFERENCE to the named pipeline's model, if set."""
    env = os.environ if environ is None else environ
    target = env.get(STALL_INFERENCE_ENV)
    if not target:
        return
    for part in parts:
        if part.config.name == target:
            logger.warning("%s=%s: this daemon is rigged to hang (tests only)", STALL_INFERENCE_ENV, target)
            part.model.invoke = _hang_after_first(part.model.invoke, target)
            return
    logger.warning("%s=%s names no pipeline; ignored", STALL_INFERENCE_ENV, target)
