"""A watchdog on the event loop: it reports code that keeps the loop from turning for longer
than a threshold (a blocking call, a long computation), and names that code.

Nothing blocks the event loop (see docs/CONVENTIONS.md); the test suite runs every test
under this watchdog (tests/conftest.py), and ``stratum serve`` runs under it when the
environment sets ``STRATUM_LOOP_WATCHDOG_MS`` (:func:`watch_from_env`), logging an ERROR
line ``event loop blocked N ms in <code>`` for each stall.

How it tells: a heartbeat callback on the loop every ``INTERVAL`` notes when it ran and the
loop thread's CPU time. A sampler thread looks at the loop thread's Python stack
(``sys._current_frames``) every few milliseconds while the heartbeat is overdue. When the
heartbeat comes more than ``threshold`` late, not counting garbage collections and the time
the loop's thread waited for a CPU (Linux's schedstat), the loop was held up; that is a stall
only if its own thread was busy: on the CPU for the threshold (a computation), or found by
the samples at one place for the threshold, again not counting waits for a CPU (a blocking
call: sleep, fsync, a lock). A loaded machine that runs the process late, or a thread that
holds the GIL elsewhere, shows neither, so a tight threshold holds on a busy two-core CI
runner. Time is per heartbeat, not per callback: a stall is one step, or a few short ones
run back to back before the heartbeat's turn (the samples name the code either way).

The heartbeat works on any loop (asyncio's, uvloop); :meth:`LoopWatchdog.pause` and
:meth:`~LoopWatchdog.resume` let a caller that runs one loop in several stretches
(``run_until_complete`` per test fixture) leave out the time between them.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any

log = logging.getLogger("stratum.loop")

ENV = "STRATUM_LOOP_WATCHDOG_MS"
INTERVAL = 0.01  # seconds between heartbeats
SAMPLE_EVERY = 0.004  # seconds between stack samples while the heartbeat is overdue
STACK_DEPTH = 8  # frames kept per sample, innermost first
MAX_RUNS = 256  # distinct runs of samples kept between two heartbeats

_Stack = tuple[tuple[CodeType, int], ...]


@dataclass(frozen=True)
class Frame:
    path: str  # relative to the project or the library directory when possible
    line: int
    function: str  # qualified name

    def __str__(self) -> str:
        return f"{self.function} ({self.path}:{self.line})"


@dataclass(frozen=True)
class Stall:
    """The loop was held up ``ms`` milliseconds, running ``stack`` (innermost first; empty
    when no sample could be taken: the code held the GIL throughout)."""

    ms: float
    cpu_ms: float
    stack: tuple[Frame, ...]
    gc_ms: float = 0.0  # of ``ms``, spent collecting garbage
    queued_ms: float = 0.0  # of ``ms``, waiting for a CPU (the machine was busy)

    @property
    def where(self) -> str:
        if not self.stack:
            return "code that held the GIL (no stack sample)"
        return " <- ".join(str(f) for f in self.stack)

    def __str__(self) -> str:
        parts = [f"{self.cpu_ms:.0f} ms on the CPU"]
        if self.gc_ms >= 1:
            parts.append(f"{self.gc_ms:.0f} ms collecting garbage")
        if self.queued_ms >= 1:
            parts.append(f"{self.queued_ms:.0f} ms waiting for a CPU")
        return f"event loop blocked {self.ms:.0f} ms ({', '.join(parts)}) in {self.where}"


class LoopWatchdog:
    """Calls ``report`` (on the loop's thread) for every stall longer than ``threshold``
    seconds. :meth:`start` on the loop's thread, :meth:`stop` when done."""

    def __init__(self, threshold: float, report: Callable[[Stall], None]) -> None:
        self.threshold = threshold
        self._report = report
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0
        self._handle: asyncio.TimerHandle | None = None
        self._watching = False
        self._last_beat = 0.0
        self._last_cpu = 0.0
        self._idle_code: frozenset[CodeType] = frozenset()
        self._lock = threading.Lock()
        # What the samples saw since the last heartbeat, per run of equal consecutive samples
        # (few objects, even over a long stall): [start, end, seconds the loop's thread
        # waited for a CPU meanwhile, stack, its queued total at the last sample]; the stack
        # is (code, line) pairs, innermost first, () for a loop waiting for events.
        self._runs: list[list[Any]] = []
        self._know_idle_code = False
        self._active = threading.Event()  # set while watching: the sampler runs
        self._stopped = False
        self._sampler: threading.Thread | None = None
        self._gc_started = 0.0
        self._gc_time = 0.0  # seconds the loop's thread spent collecting since the last beat
        self._schedstat = ""
        self._last_queued = 0.0

    # -- life cycle (on the loop's thread) ----------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread_id = threading.get_ident()
        self._schedstat = f"/proc/self/task/{threading.get_native_id()}/schedstat"
        self._sampler = threading.Thread(target=self._sample, name="loop-watchdog", daemon=True)
        self._sampler.start()
        gc.callbacks.append(self._gc)
        self.resume()

    def resume(self) -> None:
        """The loop runs (again): watch from now."""
        assert self._loop is not None
        with self._lock:
            self._runs.clear()
        self._know_idle_code = False
        self._last_beat, self._last_cpu = time.monotonic(), time.thread_time()
        self._last_queued = self._queued()
        self._gc_time = 0.0
        self._watching = True
        self._active.set()
        if self._handle is None:
            self._handle = self._loop.call_later(INTERVAL, self._beat)

    def pause(self) -> None:
        """The loop stops for a while: judge what ran since the last heartbeat, then stop
        watching until :meth:`resume`."""
        if self._watching:
            self._check()
        self._watching = False
        self._active.clear()

    def stop(self) -> None:
        self.pause()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._stopped = True
        self._active.set()
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)
        if self._sampler is not None and self._sampler is not threading.current_thread():
            self._sampler.join()

    # -- the heartbeat --------------------------------------------------------------------

    def _beat(self) -> None:
        assert self._loop is not None
        self._handle = self._loop.call_later(INTERVAL, self._beat)
        if not self._watching:
            return
        if not self._know_idle_code:
            # What is below this callback on the stack is the loop itself (its frames, or the
            # frame that called a loop written in C): a sample ending there is a loop waiting.
            codes = set()
            frame: FrameType | None = sys._getframe(1)
            while frame is not None:
                codes.add(frame.f_code)
                frame = frame.f_back
            self._idle_code, self._know_idle_code = frozenset(codes), True
        self._check()

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if threading.get_ident() != self._thread_id:
            return
        if phase == "start":
            self._gc_started = time.monotonic()
        elif self._gc_started:
            self._gc_time += time.monotonic() - self._gc_started
            self._gc_started = 0.0

    def _queued(self) -> float:
        """Seconds the loop's thread has waited for a CPU since it started (Linux's
        schedstat; 0 where there is none)."""
        try:  # (os-level: no 8 KiB buffer allocated each time, under a test's tracemalloc)
            fd = os.open(self._schedstat, os.O_RDONLY)
            try:
                return int(os.read(fd, 128).split()[1]) / 1e9
            finally:
                os.close(fd)
        except (OSError, IndexError, ValueError):
            return 0.0

    def _check(self) -> None:
        now, cpu, queued = time.monotonic(), time.thread_time(), self._queued()
        late = now - self._last_beat - INTERVAL
        cpu_used, waited_for_cpu = cpu - self._last_cpu, queued - self._last_queued
        gc_time, self._gc_time = self._gc_time, 0.0
        with self._lock:
            runs, self._runs = self._runs, []
        self._last_beat, self._last_cpu, self._last_queued = now, cpu, queued
        # Not the code's doing: a garbage collection (its length depends on every object
        # the process holds) and the time the machine had no CPU for the loop's thread.
        if late - gc_time - waited_for_cpu <= self.threshold:
            return
        # (seconds, stack) of each run of samples that found code running, less the time the
        # loop's thread waited for a CPU meanwhile
        busy = [(run[1] - run[0] - run[2], run[3]) for run in runs if run[3]]
        computing = cpu_used - gc_time >= self.threshold
        if not computing and max((s for s, _ in busy), default=0.0) < self.threshold:
            return  # the loop waited for events, or for the GIL another thread held
        ms = [late * 1000, cpu_used * 1000, gc_time * 1000, waited_for_cpu * 1000]
        self._report(Stall(ms[0], ms[1], _most_seen(busy), gc_ms=ms[2], queued_ms=ms[3]))

    # -- the sampler thread ------------------------------------------------------------------

    def _sample(self) -> None:
        while True:
            self._active.wait()  # no cost while the loop is paused
            if self._stopped:
                return
            # Sleep until the heartbeat would be overdue by a quarter of the threshold.
            overdue = time.monotonic() - self._last_beat - INTERVAL - self.threshold / 4
            if overdue < 0 or not self._idle_code:
                time.sleep(max(-overdue, SAMPLE_EVERY))
                continue  # (no heartbeat yet: the loop's own frames are not known)
            frame = sys._current_frames().get(self._thread_id)
            if frame is None:
                return  # the loop's thread ended
            stack = self._running(frame)
            now, queued = time.monotonic(), self._queued()
            with self._lock:
                run = self._runs[-1] if self._runs else None
                if run is not None and run[3] == stack:
                    run[1], run[2] = now + SAMPLE_EVERY, run[2] + queued - run[4]
                    run[4] = queued
                elif len(self._runs) < MAX_RUNS:
                    self._runs.append([now, now + SAMPLE_EVERY, 0.0, stack, queued])
            time.sleep(SAMPLE_EVERY)

    def _running(self, frame: FrameType) -> _Stack:
        """The loop thread's stack above the loop, innermost first; () if it waits for
        events (in the selector, or in a loop written in C)."""
        idle = self._idle_code
        if frame.f_code in idle or frame.f_code.co_filename.endswith("selectors.py"):
            return ()
        stack: list[tuple[CodeType, int]] = []
        current: FrameType | None = frame
        while current is not None and current.f_code not in idle and len(stack) < STACK_DEPTH:
            stack.append((current.f_code, current.f_lineno))
            current = current.f_back
        return tuple(stack)


def _most_seen(busy: list[tuple[float, _Stack]]) -> tuple[Frame, ...]:
    """The stack of the place (innermost frame) the samples saw longest."""
    if not busy:
        return ()
    seen: dict[tuple[CodeType, int], float] = collections.defaultdict(float)
    for seconds, stack in busy:
        seen[stack[0]] += seconds
    top = max(seen, key=seen.__getitem__)
    stack = next(stack for _s, stack in busy if stack[0] == top)
    return tuple(Frame(_short(code.co_filename), line, code.co_qualname) for code, line in stack)


_PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_ROOTS = sorted(
    {p.rstrip(os.sep) for p in (_PROJECT, *sys.path) if os.path.isabs(p) and p != os.sep},
    key=len,
    reverse=True,
)


def _short(path: str) -> str:
    """A source path relative to the directory it was imported from (project, library)."""
    for root in _ROOTS:
        if path.startswith(root + os.sep):
            return path[len(root) + 1 :]
    return path


def threshold_from_env(default: float | None = None) -> float | None:
    """``STRATUM_LOOP_WATCHDOG_MS`` in seconds; None when unset (then ``default``) or 0."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return default
    ms = float(raw)
    return ms / 1000 if ms > 0 else None


def watch_from_env() -> LoopWatchdog | None:
    """Start a watchdog on the running loop that logs each stall as an ERROR, if
    ``STRATUM_LOOP_WATCHDOG_MS`` asks for one (a debugging aid; tests set it)."""
    threshold = threshold_from_env()
    if threshold is None:
        return None
    watchdog = LoopWatchdog(threshold, lambda stall: log.error("%s", stall))
    watchdog.start(asyncio.get_running_loop())
    return watchdog
