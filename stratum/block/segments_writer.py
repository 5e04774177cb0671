"""The writer of one disk's segment files: a thread appending records with group commit.

Each disk has one writer thread fed through :class:`~stratum.util.groupcommit.GroupCommit`.
The thread takes everything queued (a batch), appends each segment's share of it with one
``pwritev``, then does ONE ``fdatasync`` per segment file touched (plus one directory fsync when
it created a segment) and only then resolves the callers' futures, one ``call_soon_threadsafe``
per event loop. Concurrent puts therefore share fsyncs, and a batch costs a handful of syscalls
whatever its size: each syscall releases the GIL and has to win it back, which is what limits
throughput. When other puts are under way in the store, a writer that wakes for one record
first waits a moment (the store's ``gather``) for the others' records to join its batch: one
fdatasync (about a millisecond) then covers more of them. A lone put never waits.

A record is durable once its future resolves; a crash before that leaves at most a torn tail,
which readers never see (nothing points at it) and scans skip (CRC).

Lanes: a writer keeps one open segment per replica level (``lanes``), so that the replicas of
one object that land on the same disk (fewer disks than copies) go to distinct segment files,
and one more, the last, for the records compaction moves (:data:`FLAG_COMPACTED` in its
header): records that outlived a segment are likely to live on, so they are kept apart from
fresh writes, whose deletes would otherwise force them to be moved again.

Sealing: a segment the writer stops appending to (full, or after a failed write) gets
:data:`FLAG_SEALED` in its header once its last records are synced; no process appends to it
again, so compaction may move its records and delete it. A crash can lose the flag; segments
that exist when the first process starts are sealed implicitly, except the few it goes on
appending to (:attr:`DiskWriter.at_start`).

Processes: :meth:`DiskWriter.recover` takes a ``flock`` on ``<disk>/seg/.lock``, exclusive or
(``shared``) shared; see :mod:`stratum.block.segments` for how server processes share disks.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stratum.block.disk import Disk
from stratum.block.errors import DiskWriteError, StorageError, StorageFull
from stratum.block.segments_format import (
    FLAG_COMPACTED,
    FLAG_SEALED,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    Replica,
    SegmentFormatError,
    encode_record_header,
    encode_segment_header,
    list_segments,
    prepare_for_append,
    pwritev_all,
    read_segment_header,
    segment_name,
)
from stratum.util.fsio import fsync_dir
from stratum.util.groupcommit import GroupCommit

log = logging.getLogger("stratum.block.segments")

MAX_BATCH_WRITES = 4096  # bounds the latency one batch adds to the puts queued behind it
MAX_BATCH_BYTES = 32 << 20

_Result = Replica | StorageError


@dataclass(eq=False)
class ReplicaWrite:
    """One record to append for a put, in lane ``lane``; its replica goes to ``future``."""

    lane: int
    volume_raw: bytes
    meta: bytes
    data: bytes
    crc: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Replica]

    @property
    def record_size(self) -> int:
        return RECORD_HEADER_SIZE + len(self.meta) + len(self.data)


@dataclass(eq=False)
class _Lane:
    """An open segment file a writer appends to; ``end`` is where the next record goes."""

    fd: int
    segment_no: int
    end: int
    path: Path
    new: bool  # created since the last directory fsync
    flags: int = 0  # the header's flags (FLAG_COMPACTED for the compaction lane)
    broken: bool = False  # a failed write could not be cut back: append nothing more
    pending: list[int] = field(default_factory=list)  # batch indices written, not yet synced


def _storage_error(exc: OSError, path: Path) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"{path}: no space left ({exc.strerror})")
    return DiskWriteError(f"{path}: cannot write ({exc.strerror or exc})")


class DiskWriter:
    """The one thread appending to one disk's segments (see the module docstring).

    ``lanes`` replica levels, plus the compaction lane (index ``lanes``). ``gather()`` (asked
    from the writer thread) says how long a batch waits for sibling puts;
    ``on_orphan(write, replica)`` (on the caller's loop) frees a record written for a put that
    was cancelled meanwhile; ``lock_wait`` is how many seconds :meth:`recover` waits for
    another process to let go of the disk.
    """

    def __init__(
        self,
        disk: Disk,
        lanes: int,
        segment_size: int,
        on_orphan: Callable[[ReplicaWrite, Replica], None],
        *,
        shared: bool,
        gather: Callable[[], float],
        lock_wait: float,
    ) -> None:
        self.shared = shared
        self.disk = disk
        self.seg_dir = disk.seg_dir
        self.failures = 0  # consecutive batches with a failed write; placement tries us last
        self._segment_size = segment_size
        self._on_orphan = on_orphan
        self._lock_wait = lock_wait
        self.compaction_lane = lanes
        self._lanes: list[_Lane | None] = [None] * (lanes + 1)
        self._retired: list[_Lane] = []  # closed at the end of the batch, after the sync
        self._reusable: list[tuple[int, int]] = []  # (segment_no, end) found by recover()
        # Segments that existed when this (exclusive) process started, with their sizes: the
        # records below those sizes were written before it started. Empty when shared.
        self.at_start: dict[int, int] = {}
        # Segments this writer may still append to (its lanes, lanes retired in the batch
        # under way, segments to reuse); replaced whole, never mutated: other threads read it.
        self.open_segments: frozenset[int] = frozenset()
        self._next_segment = 1
        self._lock_fd: int | None = None
        self._batches: GroupCommit[ReplicaWrite, _Result] = GroupCommit(
            self._commit,
            self._failed,
            self._deliver,
            max_items=MAX_BATCH_WRITES,
            max_bytes=MAX_BATCH_BYTES,
            size=_record_size,
            gather=gather,
        )
        self._thread = threading.Thread(
            target=self._run, name=f"seg-writer-{disk.disk_id[:8]}", daemon=True
        )

    # --- start-up (blocking, before the thread runs) -------------------------------------

    def recover(self) -> None:
        """Lock the disk, find the next segment number, cut torn tails of recent segments."""
        lock_path = self.seg_dir / ".lock"
        try:
            self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            # A dead disk must not stop the store: its writes fail and placement avoids it.
            log.error("segment directory %s is unusable: %s", self.seg_dir, exc)
            self.failures = 1
            return
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        deadline = time.monotonic() + self._lock_wait
        while True:
            try:
                fcntl.flock(self._lock_fd, mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                # The processes of a server that was just killed take a moment to go.
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                os.close(self._lock_fd)
                self._lock_fd = None
                raise DiskWriteError(f"{lock_path} is locked by another process: {exc}") from exc
        numbers = list_segments(self.seg_dir)
        self._next_segment = numbers[-1] + 1 if numbers else 1
        if self.shared:
            return  # other processes append to the existing segments: start new ones
        for number in numbers:
            try:
                self.at_start[number] = (self.seg_dir / segment_name(number)).stat().st_size
            except OSError:
                continue
        # The newest segments are where a crash can have left a torn tail worth cutting, and
        # the ones worth appending to again. Older torn tails are harmless: scans and reads
        # skip them. Sealed segments and compaction's own are not appended to again.
        for number in reversed(numbers[-self.compaction_lane :]):
            path = self.seg_dir / segment_name(number)
            try:
                # (a file shorter than a header, left by a crash, is given one and reused)
                if path.stat().st_size >= SEGMENT_HEADER_SIZE and read_segment_header(path).flags:
                    continue
                end = self._cut_torn_tail(number)
            except (OSError, SegmentFormatError) as exc:
                log.warning("not appending to segment %s any more: %s", number, exc)
                continue
            if end + RECORD_HEADER_SIZE < self._segment_size:
                self._reusable.append((number, end))
                self.at_start[number] = end
        self._note_open()

    def _cut_torn_tail(self, number: int) -> int:
        path = self.seg_dir / segment_name(number)
        end, cut_off = prepare_for_append(path, self.disk.disk_id, number)
        if cut_off:
            log.warning("cut a torn tail of %d bytes off %s", cut_off, path)
        return end

    def share(self) -> None:
        """Turn an exclusive lock into a shared one: other server processes may then start."""
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        self.shared = True

    def release(self) -> None:
        for index, lane in enumerate(self._lanes):
            if lane is not None:
                if index == self.compaction_lane:
                    self._seal(lane)  # see compaction's start-up check of unsealed segments
                os.close(lane.fd)
        self._lanes = [None] * len(self._lanes)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- used from the event loop ---------------------------------------------------------

    def lane_segment(self, lane: int) -> int | None:
        current = self._lanes[lane]
        return current.segment_no if current is not None else None

    def submit(self, write: ReplicaWrite) -> None:
        if self._batches.stopping:
            raise DiskWriteError(f"{self.seg_dir}: the segment store is closed")
        self._batches.submit(write)

    def start(self) -> None:
        """Start the thread (after :meth:`recover`)."""
        self._thread.start()

    def stop(self) -> None:
        """Let the thread finish every write queued so far, release the disk and end."""
        self._batches.stop()

    def join(self) -> None:
        """Wait for the thread to end after :meth:`stop` (blocking)."""
        self._thread.join()

    # --- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._batches.run()
        finally:
            self.release()

    def _commit(self, batch: list[ReplicaWrite]) -> list[_Result]:
        results: list[_Result | None] = [None] * len(batch)
        replicas: list[Replica | None] = [None] * len(batch)
        touched: list[_Lane] = []
        # Plan: give each record its offset (rotating full segments), then write each
        # segment's share of the batch with one pwritev. Every syscall releases the GIL and
        # must win it back from the other writers and the event loop, so fewer is faster.
        planned: dict[int, tuple[_Lane, int, list[int]]] = {}  # id(lane) -> lane, start, items
        for i, write in enumerate(batch):
            try:
                lane = self._lane_for(write.lane, write.record_size, touched)
            except StorageError as exc:
                results[i] = exc
                continue
            planned.setdefault(id(lane), (lane, lane.end, []))[2].append(i)
            lane.end += write.record_size
        for lane, start, items in planned.values():
            lane.end = start
            if lane not in touched:
                touched.append(lane)
            self._append(lane, [batch[i] for i in items], items, results, replicas)
        self._sync(touched, results, replicas)
        for lane in self._retired:
            self._seal(lane)
            os.close(lane.fd)
        self._retired.clear()
        self._note_open()
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _append(
        self,
        lane: _Lane,
        writes: list[ReplicaWrite],
        items: list[int],
        results: list[_Result | None],
        replicas: list[Replica | None],
    ) -> None:
        """Append ``writes`` at ``lane.end``: all at once, or one by one after a failure."""
        buffers: list[bytes] = []
        offset = lane.end
        for write in writes:
            header = encode_record_header(
                write.volume_raw, offset, len(write.data), write.crc, write.meta
            )
            buffers += (header, write.meta, write.data)
            offset += write.record_size
        try:
            pwritev_all(lane.fd, buffers, lane.end)
        except OSError as exc:
            if not self._cut_back(lane):
                for i in items:
                    results[i] = _storage_error(exc, lane.path)
                return
        else:
            for i, write in zip(items, writes, strict=True):
                replicas[i] = Replica(self.disk.disk_id, lane.segment_no, lane.end)
                lane.end += write.record_size
                lane.pending.append(i)
            return
        # Some record did not fit (ENOSPC...): find out which, keeping the file free of
        # partial records, since a later append would otherwise land after one.
        for i, write in zip(items, writes, strict=True):
            if lane.broken:
                results[i] = DiskWriteError(f"{lane.path}: cannot write nor truncate back")
                continue
            header = encode_record_header(
                write.volume_raw, lane.end, len(write.data), write.crc, write.meta
            )
            try:
                pwritev_all(lane.fd, [header, write.meta, write.data], lane.end)
            except OSError as exc:
                results[i] = _storage_error(exc, lane.path)
                self._cut_back(lane)
                continue
            replicas[i] = Replica(self.disk.disk_id, lane.segment_no, lane.end)
            lane.end += write.record_size
            lane.pending.append(i)

    def _sync(
        self,
        touched: list[_Lane],
        results: list[_Result | None],
        replicas: list[Replica | None],
    ) -> None:
        new_files = [lane for lane in touched if lane.new]
        dir_error: StorageError | None = None
        for lane in touched:
            try:
                os.fdatasync(lane.fd)
                if os.fstat(lane.fd).st_nlink == 0:  # directory removed under us
                    raise FileNotFoundError(errno.ENOENT, "segment file was unlinked")
            except OSError as exc:
                # After a failed fsync the page cache state is unknown: never append here again.
                err = _storage_error(exc, lane.path)
                self._retire(lane)
                for i in lane.pending:
                    results[i] = err
                lane.pending.clear()
        if new_files:
            try:
                fsync_dir(self.seg_dir)
                for lane in new_files:
                    lane.new = False
            except OSError as exc:
                dir_error = _storage_error(exc, self.seg_dir)
        for lane in touched:
            for i in lane.pending:
                if dir_error is not None and lane.new:
                    results[i] = dir_error
                else:
                    results[i] = replicas[i]
            lane.pending.clear()

    def _lane_for(self, index: int, record_size: int, touched: list[_Lane]) -> _Lane:
        lane = self._lanes[index]
        # Rotate when full, but never leave a record without a segment, however large.
        full = lane is not None and lane.end + record_size > self._segment_size
        if lane is not None and full and lane.end > SEGMENT_HEADER_SIZE:
            self._retire(lane)
            lane = None
        if lane is None:
            lane = self._open_lane(FLAG_COMPACTED if index == self.compaction_lane else 0)
            self._lanes[index] = lane
            self._note_open()
            if lane.new and lane not in touched:
                touched.append(lane)  # its header and directory entry need syncing too
        return lane

    def _note_open(self) -> None:
        current = {lane.segment_no for lane in self._lanes if lane is not None}
        current |= {lane.segment_no for lane in self._retired}
        self.open_segments = frozenset(current | {number for number, _end in self._reusable})

    def _seal(self, lane: _Lane) -> None:
        """Mark a retired segment sealed (see the module docstring). Not synced: a lost flag
        is implied again at the next start. A failure only leaves the segment unsealed."""
        flags = lane.flags | FLAG_SEALED
        try:
            pwritev_all(
                lane.fd, [encode_segment_header(self.disk.disk_id, lane.segment_no, flags)], 0
            )
        except OSError as exc:
            log.warning("cannot seal segment %s: %s", lane.path, exc)

    def _open_lane(self, flags: int) -> _Lane:
        while self._reusable and not flags:
            number, end = self._reusable.pop(0)
            if number in (lane.segment_no for lane in self._lanes if lane is not None):
                continue
            path = self.seg_dir / segment_name(number)
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError as exc:
                log.warning("cannot reopen segment %s: %s", path, exc)
                continue
            return _Lane(fd, number, end, path, new=False)
        while True:
            number = self._next_segment
            self._next_segment += 1
            path = self.seg_dir / segment_name(number)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            except OSError as exc:
                raise _storage_error(exc, path) from exc
            try:
                pwritev_all(fd, [encode_segment_header(self.disk.disk_id, number, flags)], 0)
            except OSError as exc:
                os.close(fd)
                try:
                    path.unlink()
                except OSError:
                    pass
                raise _storage_error(exc, path) from exc
            return _Lane(fd, number, SEGMENT_HEADER_SIZE, path, new=True, flags=flags)

    def _retire(self, lane: _Lane) -> None:
        """Stop appending to ``lane``; its fd is closed once this batch is synced."""
        for i, current in enumerate(self._lanes):
            if current is lane:
                self._lanes[i] = None
                self._retired.append(lane)

    def _cut_back(self, lane: _Lane) -> bool:
        """Truncate ``lane`` to its last whole record; if even that fails, abandon the segment
        (the partial record stays as its unreferenced tail). True if the lane is usable."""
        try:
            os.ftruncate(lane.fd, lane.end)
        except OSError:
            lane.broken = True
            self._retire(lane)
            return False
        return True

    def _failed(self, exc: BaseException) -> _Result:
        log.exception("segment writer for %s failed", self.seg_dir)
        return DiskWriteError(f"{self.seg_dir}: segment writer failed: {exc!r}")

    def _deliver(self, batch: list[ReplicaWrite], results: Sequence[_Result]) -> None:
        self.failures = self.failures + 1 if any(isinstance(r, Exception) for r in results) else 0
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[ReplicaWrite, _Result]]] = {}
        for write, result in zip(batch, results, strict=True):
            by_loop.setdefault(write.loop, []).append((write, result))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_answer, items, self._on_orphan)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass


def _record_size(write: ReplicaWrite) -> int:
    return write.record_size


def _answer(
    items: list[tuple[ReplicaWrite, _Result]], on_orphan: Callable[[ReplicaWrite, Replica], None]
) -> None:
    for write, result in items:
        if write.future.done():  # the put was cancelled: its record is garbage
            if isinstance(result, Replica):
                on_orphan(write, result)
        elif isinstance(result, Replica):
            write.future.set_result(result)
        else:
            write.future.set_exception(result)
