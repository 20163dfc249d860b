"""A child process whose standard output a source reads: started, drained, logged and reaped.

Used by the `command` source (camera modules through `rpicam-vid`, audio through `arecord`, any
tool that writes a stream). What it guarantees:

- The child dies with the daemon, also when the daemon is killed with SIGKILL: the kernel sends
  it SIGKILL when the thread that started it ends (prctl PR_SET_PDEATHSIG, set between fork and
  exec). The pipeline's source thread starts it and lives as long as the pipeline runs. Under
  systemd, what is left of the unit's control group is SIGKILLed once the daemon has exited
  (KillMode=mixed: the stop's SIGTERM goes to the daemon only, which stops the child first).
- It runs in a process group of its own: Ctrl-C in the terminal of a foreground `edge-runtime
  run` signals the daemon only, which then stops the child; otherwise the child would die with
  the same signal and its exit be logged and counted as a source failure at every stop. A stop
  or restart signals that whole group, so every command of an `sh -c "a | b"` ends with it.
- Its standard output is drained by a reader thread into a parser, so a paced or slow pipeline
  never leaves a stale backlog in the pipe (the parser keeps only what it needs).
- Its standard error goes to the log, line by line, at most `STDERR_BURST` lines per
  `STDERR_PERIOD` seconds (then one line saying how many were held back).
- `stop()` sends SIGTERM, then SIGKILL after a grace period, reaps it and joins its threads.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from edge_runtime.sources.base import SourceError
from edge_runtime.supervision.libc import PR_SET_PDEATHSIG, libc
from edge_runtime.supervision.threads import NamedThread

logger = logging.getLogger(__name__)

CHUNK = 1 << 16  # bytes per read from the child's stdout
STDERR_BURST = 20  # stderr lines logged per period before the rest of the period is held back
STDERR_PERIOD = 10.0
STOP_GRACE = 2.0  # seconds between SIGTERM and SIGKILL


def _die_with_parent_hook() -> Callable[[], None]:
    """A preexec_fn that makes the child receive SIGKILL when its parent thread ends."""
    parent = os.getpid()
    c = libc()

    def hook() -> None:  # runs in the child between fork and exec: no logging, no locks
        if c is not None:
            c.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


class LineBudget:
    """At most `burst` log lines per `period` seconds; counts the lines it refused."""

    def __init__(self, burst: int = STDERR_BURST, period: float = STDERR_PERIOD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.period = period
        self._clock = clock
        self._start = clock()
        self._used = 0
        self.held = 0  # refused since the last granted line

    def take(self) -> int | None:
        """None if this line must be held back, else how many lines were held back before it."""
        now = self._clock()
        if now - self._start >= self.period:
            self._start, self._used = now, 0
        if self._used >= self.burst:
            self.held += 1
            return None
        self._used += 1
        held, self.held = self.held, 0
        return held


class ChildProcess:
    """One run of a command: `on_data` gets each chunk of its stdout on a reader thread."""

    def __init__(self, argv: Sequence[str], name: str, on_data: Callable[[bytes], None],
                 env: dict[str, str] | None = None) -> None:
        if not argv:
            raise SourceError("empty command")
        self.argv = list(argv)
        self.name = name
        self._on_data = on_data
        self._env = env
        self._proc: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []
        self._eof = threading.Event()
        self._error: BaseException | None = None
        self._budget = LineBudget()

    def start(self) -> None:
        try:
            self._proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=self._env, close_fds=True,
                preexec_fn=_die_with_parent_hook(),  # noqa: PLW1509 - async-signal-safe calls only
                process_group=0,  # Ctrl-C in a terminal stops the daemon, which stops the child
            )
        except OSError as exc:
            raise SourceError(f"cannot start {self.argv[0]!r}: {exc.strerror or exc}") from exc
        logger.info("%s: started %s (pid %d)", self.name, self.argv[0], self._proc.pid)
        self._threads = [
            NamedThread(target=self._read_stdout, name=f"stdout-{self.name}", daemon=True),
            NamedThread(target=self._read_stderr, name=f"stderr-{self.name}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def finished(self) -> bool:
        """Its stdout has ended (the process exited or closed it) or the parser failed."""
        return self._eof.is_set()

    def failure(self) -> str:
        """Why the stream ended, for the SourceError the source raises."""
        if self._error is not None:
            return f"{self.argv[0]}: {self._error}"
        code = self._proc.poll() if self._proc else None
        if code is None and self._proc is not None:
            try:
                code = self._proc.wait(0.5)
            except subprocess.TimeoutExpired:
                return f"{self.argv[0]} closed its output"
        if code is not None and code < 0:
            try:
                return f"{self.argv[0]} was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"{self.argv[0]} was killed by signal {-code}"
        return f"{self.argv[0]} exited with status {code}"

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        try:
            while True:
                chunk = os.read(fd, CHUNK)
                if not chunk:
                    break
                self._on_data(chunk)
        except Exception as exc:  # noqa: BLE001 - a parser failure ends this run of the command
            self._error = exc
        finally:
            self._eof.set()

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            held = self._budget.take()
            if held is None:
                continue
            if held:
                logger.warning("%s: %d stderr lines held back", self.name, held)
            logger.warning("%s: %s", self.name, line)
        if self._budget.held:
            logger.warning("%s: %d stderr lines held back", self.name, self._budget.held)

    def stop(self) -> None:
        """Terminate (then kill) the process and its process group, reap it and join the reader
        threads."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:  # not reaped yet, so its pid still names its process group
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        for thread in self._threads:
            thread.join(STOP_GRACE)
        if any(thread.is_alive() for thread in self._threads):
            # A process it started left its group and holds the pipes open: closing a pipe a
            # reader thread is inside would block this thread too. The readers end at EOF.
            logger.warning("%s: its output stays open after it ended (a process it started "
                           "outlived it); not waiting for that", self.name)
        else:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self._proc = None


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """`sig` to the child's whole process group (it leads one: process_group=0), so the other
    commands of an `sh -c "a | b"` stop with it instead of living on as orphans that still hold
    the camera or the microphone the restarted command then finds busy."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):  # it moved to another group: the child alone
        proc.send_signal(sig)


T = TypeVar("T")


class Newest(Generic[T]):
    """The newest item a producer thread made; the consumer waits for it with a timeout.

    Live inputs need no queue: an item not taken before the next one arrives is replaced (and
    counted in `replaced`), so the consumer always gets the freshest.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self.replaced = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._item is not None:
                self.replaced += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float) -> T | None:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        with self._cond:
            self._item = None
