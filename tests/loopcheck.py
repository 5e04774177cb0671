"""What the event-loop watchdog fails a test for (see tests/conftest.py).

The threshold is ``STRATUM_LOOP_WATCHDOG_MS`` (0 turns the check off), else
:data:`DEFAULT_MS`. The watchdog reports only stalls during which the loop's own thread was
busy (computing or in a blocking call), not a process the operating system left waiting, so
one threshold holds for a lone run and for ``pytest -n 2`` on a loaded two-core machine.

:data:`ALLOWED` lists the blocking code known and not yet fixed: a stall is forgiven when a
frame of its stack is one of these functions. Each entry says what blocks; remove it when
the code is fixed.
"""

from __future__ import annotations

import re

from stratum.util.loopwatch import threshold_from_env

DEFAULT_MS = 50.0

# (source path, qualified function name) -> what blocks the loop there.
ALLOWED: dict[tuple[str, str], str] = {
    # Each pass of the garbage collector reads a page of 256 garbage records and decodes them
    # on the loop (MetaStore.read of catalog.pending_garbage): tens of ms of CPU per page.
    ("stratum/service/garbage.py", "GarbageCollector.collect"): "a page decoded on the loop",
    # Starting a thread waits until the new thread runs: tens of ms on a loaded machine. The
    # loop starts threads: the executors start theirs on demand (starting them up front would
    # avoid it), the batching log handler starts a threading.Timer per batch of lines
    # (stratum/util/loglines.py), asyncio's shutdown_default_executor one to join the executor.
    ("threading.py", "Thread.start"): "waits for the new thread to be scheduled",
}

BLOCKED = "event loop blocked"


def threshold() -> float | None:
    """Seconds, or None when the check is off."""
    return threshold_from_env(DEFAULT_MS / 1000)


# LMDB reads run on the loop by design: the map is memory, read in microseconds while its
# pages are cached. A page not cached is read by the kernel while the loop's thread sleeps in
# the fault, which on a disk busy with other tests' fsyncs takes tens of ms. Such a stall
# (inside a read transaction, its thread off the CPU for most of it) is the disk's, not code
# that computes or blocks on the loop; a read transaction that computes is still reported.
READ_TRANSACTION = ("stratum/meta/store.py", "MetaStore.read")


def _paged_in(report: str, frames: set[tuple[str, str]]) -> bool:
    figures = re.match(r".*?blocked (\d+) ms \((\d+) ms on the CPU", report)
    if figures is None or (READ_TRANSACTION[1], READ_TRANSACTION[0]) not in frames:
        return False
    waited = re.search(r"(\d+) ms waiting for a CPU", report)
    busy = int(figures[2]) + (int(waited[1]) if waited else 0)
    return busy < DEFAULT_MS and busy < int(figures[1]) / 2


def forgiven(report: str) -> bool:
    """Whether a stall report (``event loop blocked N ms in f (path:line) <- ...``) names
    allowlisted code, or is a read transaction waiting for the disk."""
    frames = set(re.findall(r"([\w.<>]+) \(([^():]+):\d+\)", report))
    return any((path, function) in ALLOWED for function, path in frames) or _paged_in(
        report, frames
    )
