"""Group commit: one writer thread commits everything queued since its last commit at once.

When each write ends in an fsync, concurrent writers can share one: the writer thread takes the
first queued item, then every item already behind it (a batch, bounded in items and bytes),
commits them together and answers each one. Callers queue from any thread (``SimpleQueue.put``
wakes the writer for a fraction of ``queue.Queue``'s cost).

Gathering (PostgreSQL's ``commit_delay`` with ``commit_siblings``): when an item wakes an idle
writer, ``gather()`` says how long to wait for others to join its batch. The owner returns a
short delay only when it knows of writes under way that will arrive soon, and 0 otherwise: a
lone writer never waits, since a fixed wait would add its whole length to every write.

Errors: ``commit(batch)`` returns one outcome per item (an item's own failure is its outcome).
If it raises instead, ``failed(exc)`` (called inside the ``except``, so it may log the
traceback) makes one outcome that every item of the batch gets: no caller is left waiting on a
writer that gave up. ``deliver(batch, outcomes)`` then answers the callers.

Shutdown: :meth:`GroupCommit.stop` queues a marker; :meth:`GroupCommit.run` commits every item
queued before it, then returns. Items may not be submitted after ``stop()``.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _no_wait() -> float:
    return 0.0


def _no_size(_item: object) -> int:
    return 0


class GroupCommitClosed(RuntimeError):
    """An item was submitted after :meth:`GroupCommit.stop`."""


class GroupCommit(Generic[T, R]):
    """The queue and the batching loop of one writer; the owner runs :meth:`run` in its thread.

    ``max_items`` and ``max_bytes`` (with ``size(item)``) bound a batch: they bound the latency
    one batch adds to the items queued behind it. A batch stops growing once it reaches either
    bound, so its last item may take it past ``max_bytes``.
    """

    def __init__(
        self,
        commit: Callable[[list[T]], Sequence[R]],
        failed: Callable[[BaseException], R],
        deliver: Callable[[list[T], Sequence[R]], None],
        *,
        max_items: int,
        max_bytes: int | None = None,
        size: Callable[[T], int] = _no_size,
        gather: Callable[[], float] = _no_wait,
    ) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self._commit = commit
        self._failed = failed
        self._deliver = deliver
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._size = size
        self._gather = gather
        self._queue: queue.SimpleQueue[T | None] = queue.SimpleQueue()
        self.stopping = False

    def submit(self, item: T) -> None:
        """Queue ``item`` for the next batch (from any thread)."""
        if self.stopping:
            raise GroupCommitClosed("the writer is stopping")
        self._queue.put(item)

    def stop(self) -> None:
        """Let :meth:`run` return once everything queued so far is committed."""
        if not self.stopping:
            self.stopping = True
            self._queue.put(None)

    def run(self) -> None:
        """Commit batches until :meth:`stop` (blocking: the writer thread's body)."""
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            wait = self._gather()
            if wait > 0:
                time.sleep(wait)
            batch, stop = self._take_batch(first)
            try:
                outcomes = self._commit(batch)
            except BaseException as exc:  # never leave callers waiting on a dead thread
                outcomes = [self._failed(exc)] * len(batch)
            self._deliver(batch, outcomes)

    def _take_batch(self, first: T) -> tuple[list[T], bool]:
        """``first`` and the items queued behind it, within bounds; True if stop was met."""
        batch = [first]
        size = self._size(first)
        limit = self._max_bytes
        while len(batch) < self._max_items and (limit is None or size < limit):
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
            size += self._size(item)
        return batch, False
