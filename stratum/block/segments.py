"""Small objects packed into append-only segment files, replicated as whole copies.

Erasure coding a 4 KiB object into k + m shard files costs k + m file creations and fsyncs;
below a size threshold (decided by the caller) an object is instead appended, as one record,
to a segment file on each of ``copies`` distinct disks (the caller passes m + 1, tolerating
the loss of m disks like the erasure code). With fewer disks than copies the extra replicas go
to distinct segment files of the same disk: that guards against bitrot, not against the loss
of the disk. The byte layout of segments and records is in :mod:`stratum.block.segments_format`.

Writes, group commit: each disk has one writer thread fed through a ``queue.SimpleQueue`` (its
``put`` wakes the thread for a fraction of ``queue.Queue``'s cost). The thread
takes everything queued (a batch), appends each segment's share of it with one ``pwritev``, then
does ONE ``fdatasync`` per segment file touched (plus one directory fsync when it created a
segment) and only then resolves the callers' futures, one ``call_soon_threadsafe`` per batch.
Concurrent puts therefore share fsyncs, and a batch costs a handful of syscalls whatever its
size. When other puts are under way in this store (PostgreSQL's ``commit_delay`` with
``commit_siblings``), a writer that wakes for one record first waits ``GATHER_DELAY`` for the
others' records to join its batch: one fdatasync (about a millisecond) then covers more of
them. A lone put never waits; with 16 clients this gave about 8 % more 4 KiB PUTs a second
(medians of 3), while a fixed wait cost a single client a fifth of its rate.
Each syscall releases the GIL and has to win it back, which is what limits throughput.
:meth:`SegmentStore.put` returns once every replica is durable; a crash before that leaves at
most a torn tail, which readers never see (nothing points at it) and scans skip (CRC).

Placement: replicas of one put go to distinct disks, round-robin; a disk whose last batch
failed is tried last (except on every 64th put, so that it is used again once it recovers).
If a replica cannot be written (ENOSPC, I/O error, directory gone) it is retried on another
disk that keeps the replicas on distinct disks; if none is left the put fails naming the path,
and the replicas it did write are counted as dead bytes.

Reads: :meth:`SegmentStore.get` reads a whole record (header, meta, payload) with one pread in
the executor, checks header CRC, volume id, sizes and payload CRC, and falls back to the next
replica, reporting the damaged one (log warning plus the ``on_damage`` callback). A record whose
bytes are in the page cache is read on the event loop instead: ``preadv(RWF_NOWAIT)`` on a
segment file kept open fails with EAGAIN rather than wait for a disk, so the loop never blocks,
and a hit saves the hand-off to an executor thread and back, which costs more than the read
(a quarter of the server's CPU for a 4 KiB GET). Anything but a whole, intact first replica
takes the executor path, which reports damage and tries the other replicas.

Deletes only count dead bytes per segment (:meth:`SegmentStore.dead_bytes`); space comes back
when a segment is compacted: copy its live records elsewhere, commit the new locations, unlink
the file (not implemented yet: the metadata layer must say which records are live).

Processes: normally one process owns a data directory: :meth:`SegmentStore.start` takes an
exclusive ``flock`` on ``<disk>/seg/.lock`` and fails if another process holds it. Several
server worker processes share the disks this way: the first (the primary) starts exclusive, cuts
torn tails, then :meth:`SegmentStore.share` turns its lock into a shared one; the others start
with ``shared=True``: a shared lock, no tail cutting, and no appending to any segment they did
not create themselves. Segment files are created with ``O_EXCL``, so two processes never pick
the same number, and each process appends only to its own files: no append offset is shared.
An offline tool (recovery, offline scrub) still needs the exclusive lock, so it cannot run
while any server process holds the disk.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import math
import os
import queue
import threading
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stratum.block.disk import Disk
from stratum.block.errors import DiskWriteError, StorageError, StorageFull, VolumeUnreadable
from stratum.block.segments_format import (
    MAX_PAYLOAD_SIZE,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    RecordMismatch,
    Replica,
    SegLocation,
    SegmentFormatError,
    SegmentRecord,
    check_record,
    encode_meta,
    encode_record_header,
    encode_segment_header,
    id_bytes,
    list_segments,
    prepare_for_append,
    pwritev_all,
    read_full,
    scan_segment,
    segment_name,
)
from stratum.util.fsio import fsync_dir, pread_cached

__all__ = ["DamageCallback", "Replica", "SegLocation", "SegmentStore", "scan_disk"]

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_SIZE = 64 << 20
MAX_BATCH_WRITES = 4096  # bounds the latency one batch adds to the puts queued behind it
MAX_BATCH_BYTES = 32 << 20
PROBE_EVERY = 64  # puts between attempts on a disk whose last write failed
LOCK_WAIT = 5.0  # seconds start() waits for another process to let go of a disk
GATHER_DELAY = 0.0005  # seconds a writer waits for sibling puts' records (see above)
_READ_FDS = 64  # segment files kept open for reads from the page cache (64 MiB each)


DamageCallback = Callable[[SegLocation, Replica, str], None]


class _BadReplica(Exception):
    """A replica that cannot be read back intact; the message says why."""


@dataclass(eq=False)
class _Write:
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
    broken: bool = False  # a failed write could not be cut back: append nothing more
    pending: list[int] = field(default_factory=list)  # batch indices written, not yet synced


def _storage_error(exc: OSError, path: Path) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"{path}: no space left ({exc.strerror})")
    return DiskWriteError(f"{path}: cannot write ({exc.strerror or exc})")


class _DiskWriter(threading.Thread):
    """The one thread appending to one disk's segments (see the module docstring)."""

    def __init__(
        self,
        disk: Disk,
        lanes: int,
        segment_size: int,
        on_orphan: Callable[[Replica, int], None],
        shared: bool = False,
        siblings: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(name=f"seg-writer-{disk.disk_id[:8]}", daemon=True)
        self._siblings = siblings  # are other puts under way? (read from this thread)
        self.shared = shared
        self.disk = disk
        self.seg_dir = disk.seg_dir
        self.queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self.failures = 0  # consecutive batches with a failed write; placement tries us last
        self.stopping = False
        self._segment_size = segment_size
        self._on_orphan = on_orphan
        self._lanes: list[_Lane | None] = [None] * lanes
        self._retired: list[_Lane] = []  # closed at the end of the batch, after the sync
        self._reusable: list[tuple[int, int]] = []  # (segment_no, end) found by recover()
        self._next_segment = 1
        self._lock_fd: int | None = None

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
        deadline = time.monotonic() + LOCK_WAIT
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
        # Any segment may be appended to; the newest ones are where a crash can have left a
        # torn tail worth cutting. Older torn tails are harmless: scans and reads skip them.
        for number in reversed(numbers[-len(self._lanes) :]):
            try:
                end = self._cut_torn_tail(number)
            except (OSError, SegmentFormatError) as exc:
                log.warning("not appending to segment %s any more: %s", number, exc)
                continue
            if end + RECORD_HEADER_SIZE < self._segment_size:
                self._reusable.append((number, end))

    def _cut_torn_tail(self, number: int) -> int:
        path = self.seg_dir / segment_name(number)
        end, cut_off = prepare_for_append(path, self.disk.disk_id, number)
        if cut_off:
            log.warning("cut a torn tail of %d bytes off %s", cut_off, path)
        return end

    def share(self) -> None:
        """Let other server processes lock the disk shared too (see the module docstring)."""
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        self.shared = True

    def release(self) -> None:
        for lane in self._lanes:
            if lane is not None:
                os.close(lane.fd)
        self._lanes = [None] * len(self._lanes)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- used from the event loop ---------------------------------------------------------

    def lane_segment(self, lane: int) -> int | None:
        current = self._lanes[lane]
        return current.segment_no if current is not None else None

    def submit(self, write: _Write) -> None:
        if self.stopping:
            raise DiskWriteError(f"{self.seg_dir}: the segment store is closed")
        self.queue.put_nowait(write)

    # --- the thread -----------------------------------------------------------------------

    def run(self) -> None:
        stop = False
        while not stop:
            first = self.queue.get()
            if first is None:
                break
            if self._siblings():
                time.sleep(GATHER_DELAY)
            batch = [first]
            size = first.record_size
            while len(batch) < MAX_BATCH_WRITES and size < MAX_BATCH_BYTES:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
                size += item.record_size
            try:
                results = self._commit(batch)
            except BaseException as exc:  # never leave callers waiting on a dead thread
                log.exception("segment writer for %s failed", self.seg_dir)
                err = DiskWriteError(f"{self.seg_dir}: segment writer failed: {exc!r}")
                results = [err] * len(batch)
            self.failures = (
                self.failures + 1 if any(isinstance(r, Exception) for r in results) else 0
            )
            self._resolve(batch, results)
        self.release()

    def _commit(self, batch: list[_Write]) -> list[Replica | StorageError]:
        results: list[Replica | StorageError | None] = [None] * len(batch)
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
            os.close(lane.fd)
        self._retired.clear()
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _append(
        self,
        lane: _Lane,
        writes: list[_Write],
        items: list[int],
        results: list[Replica | StorageError | None],
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
        results: list[Replica | StorageError | None],
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
            lane = self._open_lane()
            self._lanes[index] = lane
            if lane.new and lane not in touched:
                touched.append(lane)  # its header and directory entry need syncing too
        return lane

    def _open_lane(self) -> _Lane:
        while self._reusable:
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
                pwritev_all(fd, [encode_segment_header(self.disk.disk_id, number)], 0)
            except OSError as exc:
                os.close(fd)
                try:
                    path.unlink()
                except OSError:
                    pass
                raise _storage_error(exc, path) from exc
            return _Lane(fd, number, SEGMENT_HEADER_SIZE, path, new=True)

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

    def _resolve(self, batch: list[_Write], results: list[Replica | StorageError]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Write, Replica | StorageError]]] = {}
        for write, result in zip(batch, results, strict=True):
            by_loop.setdefault(write.loop, []).append((write, result))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items, self._on_orphan)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass


def _deliver(
    items: list[tuple[_Write, Replica | StorageError]], on_orphan: Callable[[Replica, int], None]
) -> None:
    for write, result in items:
        if write.future.done():  # the put was cancelled: its record is garbage
            if isinstance(result, Replica):
                on_orphan(result, write.record_size)
        elif isinstance(result, Replica):
            write.future.set_result(result)
        else:
            write.future.set_exception(result)


class SegmentStore:
    """Replicated, group-committed storage of small objects in segment files.

    ``copies`` replicas per object (m + 1 for a k + m pool), on distinct disks when there are
    enough. ``executor`` runs the blocking reads. ``on_damage(loc, replica, reason)`` is called
    on the event loop for every replica found missing or corrupt (besides a log warning), so
    the caller can schedule :meth:`repair`.
    """

    def __init__(
        self,
        disks: Sequence[Disk],
        copies: int,
        executor: Executor,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        on_damage: DamageCallback | None = None,
        shared: bool = False,
    ) -> None:
        if copies < 1:
            raise ValueError(f"copies must be at least 1, got {copies}")
        if not disks:
            raise ValueError("a segment store needs at least one disk")
        if len({d.disk_id for d in disks}) != len(disks):
            raise ValueError("two disks have the same disk id")
        if segment_size <= SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE:
            raise ValueError(f"segment_size {segment_size} is too small")
        for disk in disks:
            id_bytes(disk.disk_id, f"disk id of {disk.path}")
        self.copies = copies
        self._executor = executor
        self._on_damage = on_damage
        # Replicas one disk takes in normal placement: 1 with enough disks, more otherwise.
        self._spread = math.ceil(copies / len(disks))
        self._active_puts = 0  # put() calls under way; only the loop's thread changes it
        self._writers = [
            _DiskWriter(d, copies, segment_size, self._orphan, shared, self._has_siblings)
            for d in disks
        ]
        self._by_id = {w.disk.disk_id: w for w in self._writers}
        self._dead: Counter[tuple[str, int]] = Counter()
        self._rr = 0
        self._state = "new"
        # (disk id, segment) -> read-only fd, for reads from the page cache on the loop; only
        # the event loop's thread touches it, so an fd is never closed under a reader.
        self._read_fds: OrderedDict[tuple[str, int], int] = OrderedDict()

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Lock the disks, cut torn tails off recent segments, start the writer threads.

        Blocking (reads record headers of the newest segments): call at start-up or from an
        executor. A disk whose segment directory is unusable is logged and avoided; a disk
        locked by another process raises :class:`DiskWriteError`.
        """
        if self._state != "new":
            raise RuntimeError("a SegmentStore is started once")
        started: list[_DiskWriter] = []
        try:
            for writer in self._writers:
                writer.recover()
                started.append(writer)
        except BaseException:
            for writer in started:
                writer.release()
            raise
        for writer in self._writers:
            writer.start()
        self._state = "running"

    def share(self) -> None:
        """After :meth:`start`: let other server processes open these disks ``shared``."""
        for writer in self._writers:
            writer.share()

    async def close(self) -> None:
        """Finish every queued write, stop the writer threads, release the disks."""
        if self._state != "running":
            self._state = "closed"
            return
        self._state = "closed"
        for writer in self._writers:
            writer.stopping = True
            writer.queue.put_nowait(None)
        while self._read_fds:
            os.close(self._read_fds.popitem()[1])
        await asyncio.gather(*(asyncio.to_thread(w.join) for w in self._writers))

    # --- public operations ----------------------------------------------------------------

    async def put(self, volume_id: str, data: bytes, meta: Mapping[str, Any]) -> SegLocation:
        """Append ``data`` as ``copies`` durable replicas and return where they are.

        ``meta`` (JSON-serialisable: bucket, key, timestamps...) is stored with each replica so
        that metadata can be rebuilt from the disks. Raises :class:`StorageFull` or
        :class:`DiskWriteError`, naming the path, when not enough replicas could be written.
        """
        volume_raw = id_bytes(volume_id, "volume id")
        if len(data) > MAX_PAYLOAD_SIZE:
            raise ValueError(f"a segment record holds at most {MAX_PAYLOAD_SIZE} bytes")
        meta_raw = encode_meta(dict(meta))
        data = bytes(data)
        crc = zlib.crc32(data)
        self._active_puts += 1
        try:
            replicas = await self._write_replicas(volume_raw, meta_raw, data, crc, (), self.copies)
        finally:
            self._active_puts -= 1
        return SegLocation(volume_raw.hex(), len(data), crc, len(meta_raw), tuple(replicas))

    async def get(self, loc: SegLocation) -> bytes:
        """The object's bytes from the first intact replica; damage is reported, not raised.

        Raises :class:`VolumeUnreadable` when no replica is intact.
        """
        self._check_running()
        cached = self._read_cached(loc)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()
        found, damage, kept = await loop.run_in_executor(self._executor, self._read_first, loc)
        self._report(loc, damage)
        if kept is not None:
            self._keep_fd(*kept)
        if found is None:
            raise VolumeUnreadable(_unreadable_message(loc, damage))
        return found[1]

    async def delete(self, loc: SegLocation) -> dict[tuple[str, int], int]:
        """Count the replicas of ``loc`` as dead bytes (an append-only file frees nothing).

        Returns the bytes now dead per (disk id, segment number), for the caller to keep
        with its garbage counts. Call it once per location: deletes are not deduplicated.
        """
        freed: Counter[tuple[str, int]] = Counter()
        for replica in loc.replicas:
            if replica.disk_id in self._by_id:
                freed[(replica.disk_id, replica.segment)] += loc.record_size
        self._dead.update(freed)
        return dict(freed)

    async def repair(self, loc: SegLocation) -> SegLocation:
        """Check every replica; rewrite missing or corrupt ones and return the new location.

        New copies are appended to the current segments of healthy disks, keeping replicas on
        distinct disks (or distinct segments with fewer disks than copies). The caller commits
        the returned location; the replaced copies are counted as dead bytes. Returns ``loc``
        itself when nothing needed fixing. Raises :class:`VolumeUnreadable` when no replica is
        intact, :class:`StorageFull`/:class:`DiskWriteError` when a copy cannot be placed.
        """
        self._check_running()
        loop = asyncio.get_running_loop()
        good, intact, damage = await loop.run_in_executor(self._executor, self._read_all, loc)
        self._report(loc, damage)
        if intact is None:
            raise VolumeUnreadable(_unreadable_message(loc, damage))
        need = self.copies - len(good)
        if need <= 0 and not damage:
            return loc
        fresh: list[Replica] = []
        if need > 0:
            meta_raw, data = intact
            fresh = await self._write_replicas(
                id_bytes(loc.volume_id, "volume id"), meta_raw, data, loc.crc32, good, need
            )
        for replica, _reason in damage:
            if replica.disk_id in self._by_id:
                self._dead[(replica.disk_id, replica.segment)] += loc.record_size
        return replace(loc, replicas=(*good, *fresh))

    def dead_bytes(self) -> dict[tuple[str, int], int]:
        """Bytes known dead per (disk id, segment number) since start: deletes, replaced
        replicas, replicas of failed or cancelled puts. In memory only, for now."""
        return dict(self._dead)

    # --- writing --------------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._state != "running":
            raise RuntimeError(f"the segment store is {self._state}, not running")

    def _orphan(self, replica: Replica, size: int) -> None:
        self._dead[(replica.disk_id, replica.segment)] += size

    def _targets(self, existing: Sequence[Replica]) -> list[tuple[_DiskWriter, int]]:
        """(writer, lane) pairs for new replicas, best first, that keep the replicas spread.

        A disk takes at most ``spread`` replicas of one object (counting ``existing``), each in
        a lane whose current segment holds none of the others. Disks are taken round-robin,
        healthy ones first.
        """
        n = len(self._writers)
        start = self._rr % n
        self._rr += 1
        rotated = self._writers[start:] + self._writers[:start]
        if self._rr % PROBE_EVERY and any(w.failures for w in rotated):
            # Disks whose last batch failed go last (stable sort: the rotation stays), except
            # on every PROBE_EVERY-th put, so a disk that recovers (space freed) is used again.
            rotated.sort(key=lambda w: w.failures > 0)
        if not existing:  # the common case: lane k holds a disk's k-th replica
            return [(writer, level) for level in range(self._spread) for writer in rotated]
        held = Counter(r.disk_id for r in existing)
        held_segments: dict[str, set[int]] = {}
        for r in existing:
            held_segments.setdefault(r.disk_id, set()).add(r.segment)
        targets: list[tuple[_DiskWriter, int]] = []
        for level in range(self._spread):
            for writer in rotated:
                already = held[writer.disk.disk_id]
                if level < already:
                    continue
                taken = held_segments.get(writer.disk.disk_id, set())
                free = [j for j in range(self.copies) if writer.lane_segment(j) not in taken]
                if level - already < len(free):
                    targets.append((writer, free[level - already]))
        return targets

    async def _write_replicas(
        self,
        volume_raw: bytes,
        meta_raw: bytes,
        data: bytes,
        crc: int,
        existing: Sequence[Replica],
        need: int,
    ) -> list[Replica]:
        self._check_running()
        loop = asyncio.get_running_loop()
        targets = self._targets(existing)
        attempt, spare = targets[:need], targets[need:]
        failed_disks: set[str] = set()
        errors: list[StorageError] = []
        written: list[Replica] = []
        futures: list[asyncio.Future[Replica]] = []
        record_size = RECORD_HEADER_SIZE + len(meta_raw) + len(data)
        try:
            while attempt:
                futures = []
                for writer, lane in attempt:
                    futures.append(loop.create_future())
                    writer.submit(_Write(lane, volume_raw, meta_raw, data, crc, loop, futures[-1]))
                outcomes = await asyncio.gather(*futures, return_exceptions=True)
                retry: list[tuple[_DiskWriter, int]] = []
                for (writer, _lane), outcome in zip(attempt, outcomes, strict=True):
                    if isinstance(outcome, Replica):
                        written.append(outcome)
                        continue
                    log.warning("replica write failed: %s", outcome)
                    errors.append(
                        outcome
                        if isinstance(outcome, StorageError)
                        else DiskWriteError(f"{writer.seg_dir}: {outcome!r}")
                    )
                    failed_disks.add(writer.disk.disk_id)
                    # Another disk, as long as the replicas stay spread (see _targets).
                    alt = next((t for t in spare if t[0].disk.disk_id not in failed_disks), None)
                    if alt is not None:
                        spare.remove(alt)
                        retry.append(alt)
                attempt = retry
        except BaseException:
            for future in futures:
                future.cancel()  # the writer counts what it still writes as dead
            for replica in written:
                self._orphan(replica, record_size)
            raise
        if len(written) < need:
            for replica in written:
                self._orphan(replica, record_size)
            if not errors:
                raise DiskWriteError("no disk is available for a replica")
            detail = "; ".join(str(e) for e in errors)
            volume = volume_raw.hex()
            raise type(errors[0])(
                f"volume {volume}: {len(written)} of {need} replicas written: {detail}"
            )
        return written

    # --- reading from the page cache (on the event loop) -----------------------------------

    def _has_siblings(self) -> bool:
        return self._active_puts > 1

    def _read_cached(self, loc: SegLocation) -> bytes | None:
        """The payload of ``loc`` if its first replica is intact and in the page cache; else
        None (not cached, no open fd yet, damaged, anything odd: the executor path decides)."""
        if not loc.replicas:
            return None
        first = loc.replicas[0]
        fd = self._read_fds.get((first.disk_id, first.segment))
        if fd is None:
            return None
        self._read_fds.move_to_end((first.disk_id, first.segment))
        raw = pread_cached(fd, loc.record_size, first.offset)
        if raw is None:
            return None
        try:
            return check_record(memoryview(raw), loc, first.offset)[1]
        except RecordMismatch:
            return None

    def _keep_fd(self, key: tuple[str, int], fd: int) -> None:
        """Keep an fd the executor opened for later reads on the loop (LRU, a few dozen)."""
        if key in self._read_fds or self._state != "running":
            os.close(fd)
            return
        self._read_fds[key] = fd
        if len(self._read_fds) > _READ_FDS:
            os.close(self._read_fds.popitem(last=False)[1])

    # --- reading (in the executor) --------------------------------------------------------

    def _read_replica(
        self, loc: SegLocation, replica: Replica, keep: bool = False
    ) -> tuple[tuple[bytes, bytes], int | None]:
        """(meta bytes, payload) of one replica, checked against ``loc``, and with ``keep``
        the fd the replica was read through, left open; else _BadReplica."""
        writer = self._by_id.get(replica.disk_id)
        if writer is None:
            raise _BadReplica(f"disk {replica.disk_id} is not in this pool")
        path = writer.seg_dir / segment_name(replica.segment)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                raw = read_full(fd, loc.record_size, replica.offset)
            except BaseException:
                os.close(fd)
                raise
        except OSError as exc:
            raise _BadReplica(f"{path}: {exc.strerror or exc}") from exc
        try:
            found = check_record(raw, loc, replica.offset)
        except RecordMismatch as exc:
            os.close(fd)
            raise _BadReplica(f"{path} at offset {replica.offset}: {exc}") from exc
        if keep:
            return found, fd
        os.close(fd)
        return found, None

    def _read_first(
        self, loc: SegLocation
    ) -> tuple[
        tuple[bytes, bytes] | None, list[tuple[Replica, str]], tuple[tuple[str, int], int] | None
    ]:
        """The first intact replica, the damage met on the way, and the first replica's file
        opened for :meth:`_read_cached` when it was read intact."""
        damage: list[tuple[Replica, str]] = []
        for index, replica in enumerate(loc.replicas):
            try:
                found, fd = self._read_replica(loc, replica, keep=index == 0)
            except _BadReplica as exc:
                damage.append((replica, str(exc)))
                continue
            kept = None if fd is None else ((replica.disk_id, replica.segment), fd)
            return found, damage, kept
        return None, damage, None

    def _read_all(
        self, loc: SegLocation
    ) -> tuple[list[Replica], tuple[bytes, bytes] | None, list[tuple[Replica, str]]]:
        good: list[Replica] = []
        intact: tuple[bytes, bytes] | None = None
        damage: list[tuple[Replica, str]] = []
        for replica in loc.replicas:
            try:
                found, _fd = self._read_replica(loc, replica)
            except _BadReplica as exc:
                damage.append((replica, str(exc)))
                continue
            good.append(replica)
            intact = intact or found
        return good, intact, damage

    def _report(self, loc: SegLocation, damage: list[tuple[Replica, str]]) -> None:
        for replica, reason in damage:
            log.warning("volume %s: damaged replica %s: %s", loc.volume_id, replica, reason)
            if self._on_damage is not None:
                self._on_damage(loc, replica, reason)


def _unreadable_message(loc: SegLocation, damage: list[tuple[Replica, str]]) -> str:
    reasons = "; ".join(reason for _replica, reason in damage) or "no replicas"
    return f"volume {loc.volume_id}: no intact replica left ({reasons})"


def scan_disk(disk: Disk) -> Iterator[tuple[int, SegmentRecord]]:
    """Every record on a disk as (segment number, record), oldest segment first (blocking).

    For rebuilding metadata: each record carries its volume id and meta. Torn tails and
    damaged records are handled as in :func:`scan_segment`.
    """
    for number in list_segments(disk.seg_dir):
        for record in scan_segment(disk.seg_dir / segment_name(number)):
            yield number, record
