"""Test-only fault injection at the model layer, off unless its environment variables are set.

Every model the daemon loads goes through `rig_model` (pipeline/assembly.py's `load_model`): a
pipeline's model, each stage's and the escalation model, at start and again on every reload, so a
fault survives a reload and reaches the secondary models. A model is named by its place in the
config: the pipeline's name for its own model, `<pipeline>.<stage>` for a stage's model and
`<pipeline>.escalate` for the escalation model.

- EDGE_RUNTIME_TEST_STALL_INFERENCE=<model> makes that model's interpreter hang on its second
  invoke (after one good result), the way a wedged delegate or driver hangs: the thread sits inside
  the call, beats no heartbeat and is never released. The systemd watchdog tests use it to prove
  that a hung worker stops the WATCHDOG=1 pings.
- EDGE_RUNTIME_TEST_FAIL_INVOKE=<model>=<file>[;<model>=<file>...] makes every invoke of that
  model raise, as an interpreter or delegate error does, for as long as <file> exists; deleting
  the file clears the fault (a reload then succeeds and the model answers again).

Nothing else reads these variables.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)

STALL_INFERENCE_ENV = "EDGE_RUNTIME_TEST_STALL_INFERENCE"
FAIL_INVOKE_ENV = "EDGE_RUNTIME_TEST_FAIL_INVOKE"


class InjectedFault(RuntimeError):
    """Raised by a rigged invoke (EDGE_RUNTIME_TEST_FAIL_INVOKE)."""


class _Model(Protocol):
    fault: Callable[[], None] | None


def _hang_after_first(name: str) -> Callable[[], None]:
    calls = 0
    never = threading.Event()

    def hang_after_first() -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            logger.warning("%s: model %s hangs inside invoke now (test hook)", STALL_INFERENCE_ENV,
                           name)
            never.wait()  # never set: this thread is stuck for good, like a hung interpreter

    return hang_after_first


def _fail_while(path: Path, name: str) -> Callable[[], None]:
    def fail_while_file_exists() -> None:
        if path.exists():
            raise InjectedFault(f"{FAIL_INVOKE_ENV}: model {name} fails while {path} exists "
                                "(test hook)")

    return fail_while_file_exists


def _chain(hooks: list[Callable[[], None]]) -> Callable[[], None]:
    def all_hooks() -> None:
        for hook in hooks:
            hook()

    return hooks[0] if len(hooks) == 1 else all_hooks


@dataclass(frozen=True)
class Faults:
    """The faults the environment asks for, by model name."""

    stall: str | None = None
    fail: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Faults:
        env = os.environ if environ is None else environ
        fail: dict[str, Path] = {}
        for entry in filter(None, (e.strip() for e in env.get(FAIL_INVOKE_ENV, "").split(";"))):
            name, sep, path = entry.partition("=")
            if not sep or not name or not path:
                logger.warning("%s: %r is not <model>=<file>; ignored", FAIL_INVOKE_ENV, entry)
                continue
            fail[name] = Path(path)
        return cls(env.get(STALL_INFERENCE_ENV) or None, fail)

    def rig(self, model: _Model, name: str) -> None:
        """Install the faults named for `name` into this freshly loaded model (if any)."""
        hooks = []
        if self.stall == name:
            logger.warning("%s=%s: this model is rigged to hang (tests only)", STALL_INFERENCE_ENV,
                           name)
            hooks.append(_hang_after_first(name))
        if name in self.fail:
            logger.warning("%s: model %s is rigged to fail while %s exists (tests only)",
                           FAIL_INVOKE_ENV, name, self.fail[name])
            hooks.append(_fail_while(self.fail[name], name))
        if hooks:
            model.fault = _chain(hooks)


def rig_model(model: _Model, name: str, environ: Mapping[str, str] | None = None) -> None:
    """Apply $EDGE_RUNTIME_TEST_STALL_INFERENCE / $EDGE_RUNTIME_TEST_FAIL_INVOKE to a model that
    was just loaded as `name`; a no-op unless a test sets them."""
    env = os.environ if environ is None else environ
    if STALL_INFERENCE_ENV in env or FAIL_INVOKE_ENV in env:
        Faults.from_env(env).rig(model, name)
