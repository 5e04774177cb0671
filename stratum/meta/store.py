"""The LMDB environment, its single writer thread, and group commit.

LMDB allows one write transaction at a time and a commit costs an fsync, so all
writes go through one thread (never the event loop). The thread takes every
request queued since its last commit (:mod:`stratum.util.groupcommit`), runs each in a
nested transaction (so one failing request rolls back alone), and commits them together:
one fsync for a whole burst of concurrent PUTs. Under load the bursts are short (a commit's
two fsyncs take about as long as the gap between PUTs), so a PUT announces its commit while
it stores its body (:meth:`MetaStore.coming`); the writer, finding such a write on its way,
waits ``GATHER_DELAY`` before committing so that it joins. A lone PUT never waits. Reads run
in short read transactions on the caller's thread; LMDB reads are lock-free memory-mapped
lookups that take microseconds.

The map grows on its own: when a write hits ``MapFullError`` the writer waits
for in-process readers to finish, doubles the map size and retries the batch; at open it is
made twice what the store uses, so that a restart does not begin with a growth. A batch that
cannot be written for want of space (the filesystem is full, or the map cannot grow) fails
every caller of the batch with :class:`MetaFull` (S3 answers ``InsufficientStorage``).

Several server processes may share the environment (``server.workers``): LMDB serialises
their write transactions with its own lock, and a process whose map another one grew gets
``MapResizedError`` when it begins a transaction; it then adopts the new size
(``set_mapsize(0)``, with no transaction of its own open) and begins again.

Sub-databases (all values are versioned records, see :mod:`stratum.meta.records`):
``buckets``, ``objects``, ``volumes``, ``users``, ``gc``, ``uploads``, ``parts``, ``info``,
``versions`` and ``nullver`` (:mod:`stratum.meta.versions`), ``upkeys``
(:mod:`stratum.meta.uploads`); ``decisions``
(:mod:`stratum.tiering.decisions`), ``console`` (the web console's history,
:mod:`stratum.console.history`) and ``replq`` (:mod:`stratum.replication.queue`) have
formats of their own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from stratum.util.groupcommit import GroupCommit

log = logging.getLogger("stratum.meta")

T = TypeVar("T")

DB_NAMES = (
    "buckets",
    "objects",
    "volumes",
    "users",
    "gc",
    "uploads",
    "parts",
    "info",
    "decisions",
    "versions",
    "nullver",
    "console",
    "replq",
    "upkeys",
)
INITIAL_MAP_SIZE = 256 << 20
HEADROOM = 2  # at open, the map is at least this many times what the store uses
MAX_BATCH = 512
GATHER_DELAY = 0.0005  # seconds a commit waits for a write that coming() announced
# A commit that fails with less free space than this on the store's filesystem failed for
# want of space (the batch it could not write may be larger than what is left).
FULL_MARGIN = 16 << 20
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class MetaError(Exception):
    """The metadata store could not be opened or written."""


class MetaFull(MetaError):
    """A commit failed for want of space: the metadata store's filesystem is full (or the map
    could not grow). Nothing of the batch was written."""


class _SharedExclusiveLock:
    """Many readers or one resizer: LMDB forbids a resize while this process has
    a transaction open."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._exclusive = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        self.acquire_shared()
        try:
            yield
        finally:
            self.release_shared()

    def acquire_shared(self) -> None:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._readers += 1

    def release_shared(self) -> None:
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


@dataclass
class Tx:
    """A transaction with the store's named sub-databases at hand."""

    txn: Any
    dbs: dict[str, Any]

    def get(self, db: str, key: bytes) -> bytes | None:
        value = self.txn.get(key, db=self.dbs[db])
        return None if value is None else bytes(value)

    def put(self, db: str, key: bytes, value: bytes) -> None:
        self.txn.put(key, value, db=self.dbs[db])

    def delete(self, db: str, key: bytes) -> bool:
        return bool(self.txn.delete(key, db=self.dbs[db]))

    def cursor(self, db: str) -> Any:
        return self.txn.cursor(db=self.dbs[db])

    def entries(self, db: str) -> int:
        """How many entries ``db`` holds (LMDB keeps the count: no walk)."""
        return int(self.txn.stat(self.dbs[db])["entries"])

    def drop(self, db: str) -> None:
        """Remove every entry of ``db`` (a write transaction), keeping the database."""
        self.txn.drop(self.dbs[db], delete=False)


_Job = tuple[Callable[[Tx], Any], Callable[[bool, Any], None]]
_Outcome = tuple[bool, Any]  # (True, value returned) or (False, exception raised)


class MetaStore:
    """The metadata environment. ``open()`` blocks (call it at start-up)."""

    def __init__(self, path: Path, *, map_size: int = INITIAL_MAP_SIZE) -> None:
        self.path = path
        self._map_size = map_size
        self._env: Any = None
        self._dbs: dict[str, Any] = {}
        self._guard = _SharedExclusiveLock()
        self._batches = self._new_batches()
        self._coming = 0  # writes being prepared (see coming()); changed on the loop only
        self._thread: threading.Thread | None = None
        self.commits = 0  # for tests and metrics: how many fsynced commits
        self.writes = 0

    # -- life cycle -------------------------------------------------------------------

    def open(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._env = lmdb.open(
                str(self.path),
                map_size=self._map_size,
                max_dbs=len(DB_NAMES) + 4,
                subdir=True,
                sync=True,
                metasync=True,
                readahead=False,
                max_readers=512,
            )
        except (OSError, lmdb.Error) as exc:
            raise MetaError(f"cannot open metadata store {self.path}: {exc}") from exc
        # Reader slots left by a killed process pin old pages (the file would only grow).
        self._env.reader_check()
        # The map may have been grown by an earlier run: start from its real size, and with
        # room to grow. LMDB reopens a store with a map the size of its file, full: the first
        # write would grow it, and a growth waits for every read transaction (the start-up
        # sweep's over every volume) while holding up new ones, the event loop's included.
        # Growing now, with no transaction open, costs nothing (the file grows as it fills).
        info = self._env.info()
        used = (int(info["last_pgno"]) + 1) * int(self._env.stat()["psize"])
        self._map_size = max(self._map_size, int(info["map_size"]), HEADROOM * used)
        if self._map_size > int(info["map_size"]):
            self._env.set_mapsize(self._map_size)
        for name in DB_NAMES:
            self._dbs[name] = self._env.open_db(name.encode())
        if self._batches.stopping:  # opened again after close()
            self._batches = self._new_batches()
        self._thread = threading.Thread(target=self._batches.run, name="lmdb-writer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._batches.stop()
            self._thread.join()
            self._thread = None
        if self._env is not None:
            self._env.close()
            self._env = None

    def copy_to(self, dest: Path) -> None:
        """A consistent hot copy of the whole environment (blocking)."""
        dest.mkdir(parents=True, exist_ok=True)
        with self._guard.shared():
            self._env.copy(str(dest), compact=True)

    # -- reads ------------------------------------------------------------------------

    def read(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a read transaction on this thread."""
        with self._guard.shared(), self._begin() as txn:
            return fn(Tx(txn, self._dbs))

    @contextlib.contextmanager
    def reader(self) -> Iterator[Tx]:
        """A read transaction for code that walks cursors (listing)."""
        with self._guard.shared(), self._begin() as txn:
            yield Tx(txn, self._dbs)

    def _begin(self, **kwargs: Any) -> Any:
        """Begin a transaction (the caller holds the guard shared), adopting a map size
        another process set first if need be."""
        while True:
            try:
                return self._env.begin(buffers=False, **kwargs)
            except lmdb.MapResizedError:
                self._adopt_map_size()

    def _adopt_map_size(self) -> None:
        # Called with the guard held shared by this thread: the resize needs it exclusive,
        # which waits for our own share to go. Hand it back for the duration.
        self._guard.release_shared()
        try:
            with self._guard.exclusive():
                self._env.set_mapsize(0)
                self._map_size = int(self._env.info()["map_size"])
        finally:
            self._guard.acquire_shared()

    # -- writes -----------------------------------------------------------------------

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in a write transaction on the writer thread; return once committed.

        ``fn`` may run more than once if the map had to grow, so it must only touch
        the transaction. Exceptions it raises are returned to the caller and roll
        back only its own changes.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()

        def resolve(ok: bool, value: Any) -> None:
            loop.call_soon_threadsafe(_resolve_async, fut, ok, value)

        self._batches.submit((fn, resolve))
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The writer thread runs the job regardless: wait for its outcome so that a
            # caller being cancelled never acts (e.g. frees data) on a commit that happens.
            with contextlib.suppress(BaseException):
                await fut
            raise

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        """The same as :meth:`write`, for code outside the event loop (CLI, start-up)."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def resolve(ok: bool, value: Any) -> None:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

        self._batches.submit((fn, resolve))
        return fut.result()

    @contextlib.contextmanager
    def coming(self) -> Iterator[None]:
        """Say that a write will follow what the caller does now (a PUT receiving and storing
        its body): the writer then waits ``GATHER_DELAY`` before a commit, for that write to
        join it (see the module docstring). Call it on the event loop's thread."""
        self._coming += 1
        try:
            yield
        finally:
            self._coming -= 1

    def _new_batches(self) -> GroupCommit[_Job, _Outcome]:
        return GroupCommit(
            self._commit_batch,
            self._commit_failed,
            self._deliver,
            max_items=MAX_BATCH,
            gather=self._gather_delay,
        )

    def _gather_delay(self) -> float:
        # Read from the writer thread; a stale count only costs or saves one short wait.
        return GATHER_DELAY if self._coming else 0.0

    def _commit_batch(self, batch: list[_Job]) -> list[_Outcome]:
        """Run every job in one write transaction; an LMDB error fails the whole batch."""
        while True:
            outcomes: list[_Outcome] = []
            try:
                with self._guard.shared():
                    txn = self._begin(write=True)
                    try:
                        for fn, _resolve in batch:
                            sub = self._env.begin(write=True, parent=txn)
                            try:
                                value = fn(Tx(sub, self._dbs))
                            except lmdb.MapFullError:
                                sub.abort()
                                raise
                            except BaseException as exc:  # returned to the caller
                                sub.abort()
                                outcomes.append((False, exc))
                            else:
                                sub.commit()
                                outcomes.append((True, value))
                        txn.commit()
                    except BaseException:
                        txn.abort()
                        raise
            except lmdb.MapFullError as full:
                try:
                    self._grow()
                except lmdb.Error:  # the map cannot grow (address space, a 32-bit system)
                    raise full from None
                continue
            return outcomes

    def _commit_failed(self, exc: BaseException) -> _Outcome:
        """The outcome of every job of a batch whose commit failed (called in the except)."""
        if self._out_of_space(exc):
            log.error("metadata commit failed, no space left for %s: %s", self.path, exc)
            return (False, MetaFull(f"no space left for the metadata store {self.path}"))
        log.exception("metadata commit failed")
        return (False, MetaError(f"metadata commit failed: {exc}"))

    def _out_of_space(self, exc: BaseException) -> bool:
        if isinstance(exc, lmdb.MapFullError):  # only when the map could not grow
            return True
        if not isinstance(exc, lmdb.Error | OSError):
            return False
        # LMDB reports a write cut short by a full disk as EIO, not ENOSPC: ask the disk.
        if any(os.strerror(code) in str(exc) for code in _NO_SPACE):
            return True
        try:
            return shutil.disk_usage(self.path).free < FULL_MARGIN
        except OSError:
            return False

    def _deliver(self, batch: list[_Job], outcomes: Sequence[_Outcome]) -> None:
        self.commits += 1
        self.writes += len(batch)
        for (_fn, resolve), (ok, value) in zip(batch, outcomes, strict=True):
            resolve(ok, value)

    def _grow(self) -> None:
        with self._guard.exclusive():
            # Another process may have grown it already: start from the size in use.
            with contextlib.suppress(lmdb.Error):
                self._env.set_mapsize(0)
                self._map_size = max(self._map_size, int(self._env.info()["map_size"]))
            self._map_size *= 2
            log.info("growing metadata map to %d MiB", self._map_size >> 20)
            self._env.set_mapsize(self._map_size)


def _resolve_async(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.cancelled():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)
