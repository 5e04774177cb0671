"""Background walks give way to requests: a share of the time for the walk, the rest asleep.

A walk over every record of a large store (the tier pass, the console's census, the metrics'
tier counts, the start-up sweep) is minutes of a core at ten million objects. Run flat out it
takes the process's core, or the GIL its event loop needs, from the requests being served:
measured at ten million objects, PUT and GET rates halved while the first tier pass and
census ran. Paced, a walk works for a stretch (a page or a slice, a few milliseconds), then
sleeps long enough that its work is at most ``busy_share`` of the time while requests are
arriving, and ``idle_share`` when none arrived since its last stretch: an idle server walks
at full speed, a busy one hardly notices the walk, which only takes longer. While requests
arrive, the walks of a process share one budget (:class:`Ledger`): together, not each, they
work at most the busy share of the time (after a start the tier pass, the census and
compaction's accounting all walk at once).

Requests are counted by the S3 server of each process (:func:`note_request`). A walk runs in
the primary process, and the worker processes take most connections while the primary is
busy walking, so each process counts into its own slot of a page the processes share
(:func:`share_between`, called before the workers are forked, and :func:`use_slot` in each):
a walk sees every request of the server, whichever process serves it.

Walks in an executor thread pause with :meth:`Pacer.pause_blocking`, walks on the loop with
:meth:`Pacer.pause`; both return the seconds slept.
"""

from __future__ import annotations

import asyncio
import mmap
import struct
import threading
import time
from collections.abc import Callable

BUSY_SHARE = 0.1  # of the time a walk may work while requests arrive
IDLE_SHARE = 1.0  # ... while none arrive: flat out
LONGEST_PAUSE = 1.0  # seconds: one long stretch never parks a walk for minutes (default)

_SLOT = struct.Struct("<Q")
_requests = 0  # requests this process has started serving (a counter, never reset)
_shared: mmap.mmap | None = None  # one slot per process, each written by its process alone
_slot = 0


def share_between(processes: int) -> None:
    """Make a page the processes forked after this share: each counts its requests into its
    own slot (written by one process only: no lock), :func:`requests_started` sums them."""
    global _shared, _slot
    _shared = mmap.mmap(-1, _SLOT.size * max(1, processes))  # anonymous, MAP_SHARED
    _slot = 0
    _SLOT.pack_into(_shared, 0, _requests)


def use_slot(index: int) -> None:
    """This process counts into slot ``index`` of the shared page (0: the primary's)."""
    global _slot, _requests
    _slot, _requests = index, 0


def note_request() -> None:
    """Count one request started (the S3 server calls it for each)."""
    global _requests
    _requests += 1
    if _shared is not None:
        _SLOT.pack_into(_shared, _slot * _SLOT.size, _requests)


def requests_started() -> int:
    """Requests started by the whole server (every process), or by this one if unshared."""
    if _shared is None:
        return _requests
    return sum(n for (n,) in _SLOT.iter_unpack(_shared))


class Ledger:
    """What the walks of a process worked while requests arrived, against what they may: all
    walks together at most their busy share of the time, not each of them (three walks at a
    tenth each would take three tenths). A token bucket in debt: time accrues ``share`` of
    each second to it; a stretch of work is charged to it; a walk then waits until the debt
    is paid. Thread-safe (walks run in threads and on the loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._debt = 0.0  # seconds of work done beyond the share
        self._at: float | None = None

    def charge(self, stretch: float, share: float, now: float) -> float:
        """Charge a stretch of work ended at ``now``: the seconds to wait for the share."""
        with self._lock:
            elapsed = stretch if self._at is None else max(0.0, now - self._at)
            # While no walk works nothing is saved up for later: the debt never goes below 0.
            self._debt = max(0.0, self._debt + stretch - elapsed * share)
            self._at = now
            return self._debt / share


LEDGER = Ledger()  # this process's


class Pacer:
    """Paces one walk (see the module docstring); while requests arrive the walks of a process
    share one :class:`Ledger`.

    ``worked`` sums the seconds of work the walk did (its stretches, not its pauses): what a
    walk's cost is judged by when the next one is scheduled."""

    def __init__(
        self,
        busy_share: float = BUSY_SHARE,
        idle_share: float = IDLE_SHARE,
        requests: Callable[[], int] = requests_started,
        monotonic: Callable[[], float] = time.monotonic,
        longest: float = LONGEST_PAUSE,
        ledger: Ledger = LEDGER,
    ) -> None:
        if not (0.0 < busy_share <= idle_share <= 1.0):
            raise ValueError("shares must be 0 < busy_share <= idle_share <= 1")
        self.busy_share = busy_share
        self.idle_share = idle_share
        self.longest = longest
        self._ledger = ledger
        self._requests = requests
        self._monotonic = monotonic
        self._seen = requests()
        self._stretch_began = monotonic()
        self.worked = 0.0
        self.slept = 0.0

    def begin(self) -> None:
        """Start a stretch of work now (after a wait that was not the walk's own work)."""
        self._stretch_began = self._monotonic()

    def due(self) -> float:
        """End the current stretch: the seconds to sleep before the next one."""
        now = self._monotonic()
        stretch = max(0.0, now - self._stretch_began)
        self.worked += stretch
        seen = self._requests()
        busy, self._seen = seen != self._seen, seen
        if busy:
            wait = self._ledger.charge(stretch, self.busy_share, now)
        else:
            wait = stretch * (1.0 / self.idle_share - 1.0)
        return min(self.longest, wait)

    def pause_blocking(self, stopping: threading.Event | None = None) -> float:
        """End a stretch in a thread: sleep what :meth:`due` says (waking early if
        ``stopping`` is set), then begin the next."""
        wait = self.due()
        if wait > 0:
            if stopping is not None:
                stopping.wait(wait)
            else:
                time.sleep(wait)
        self.slept += wait
        self.begin()
        return wait

    async def pause(self) -> float:
        """End a stretch on the loop: yield to it for what :meth:`due` says (at least one
        turn, so requests are served between two stretches), then begin the next."""
        wait = self.due()
        await asyncio.sleep(wait)
        self.slept += wait
        self.begin()
        return wait
