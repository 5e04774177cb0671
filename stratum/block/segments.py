"""Small objects packed into append-only segment files, replicated as whole copies.

Erasure coding a 4 KiB object into k + m shard files costs k + m file creations and fsyncs;
below a size threshold (decided by the caller) an object is instead appended, as one record,
to a segment file on each of ``copies`` distinct disks (the caller passes m + 1, tolerating
the loss of m disks like the erasure code). With fewer disks than copies the extra replicas go
to distinct segment files of the same disk: that guards against bitrot, not against the loss
of the disk. The byte layout of segments and records is in :mod:`stratum.block.segments_format`.

Writes: each disk has one writer thread that appends queued records in batches and fsyncs
each batch once (group commit, :mod:`stratum.block.segments_writer`). While other puts are
under way in this store, a writer that wakes for one record first waits ``GATHER_DELAY`` for
theirs to join its batch (PostgreSQL's ``commit_delay`` with ``commit_siblings``); a lone put
never waits. :meth:`SegmentStore.put` returns once every replica is durable.

Placement: replicas of one put go to distinct disks, round-robin; a disk whose last batch
failed is tried last (except on every 64th put, so that it is used again once it recovers).
If a replica cannot be written (ENOSPC, I/O error, directory gone) it is retried on another
disk that keeps the replicas on distinct disks; if none is left the put fails naming the path,
and the replicas it did write are freed.

Reads check every byte against the location and fall back to the next replica, reporting
damage; records in the page cache are read on the event loop
(:mod:`stratum.block.segments_reader`).

Deletes free the records in place: a hole is punched over each replica, so the space comes
back at once (:mod:`stratum.block.segments_space`). What holes cannot give back (blocks a freed
record shares with live ones, records on a filesystem without hole punching) compaction does
(:mod:`stratum.maintenance.compaction`, which knows from the metadata which records are live):
it moves a sealed segment's live records with :meth:`SegmentStore.relocate`, commits their new
locations, and once the garbage collector has freed the old copies removes the file
(:meth:`SegmentStore.remove_segment`). :meth:`SegmentStore.usage` says, per segment file, what
it takes on the disk and how much of it is live, as of the figures compaction last gave
(:meth:`SegmentStore.set_live`) less what was freed since.

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
import logging
import math
import os
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

from stratum.block.disk import Disk
from stratum.block.errors import DiskWriteError, StorageError
from stratum.block.segments_format import (
    MAX_PAYLOAD_SIZE,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    RecordHeader,
    Replica,
    SegLocation,
    SegmentRecord,
    encode_meta,
    id_bytes,
    list_segments,
    scan_segment,
    segment_name,
)
from stratum.block.segments_reader import DamageCallback, SegmentReader, unreadable
from stratum.block.segments_space import SegmentFile, free_record, measure
from stratum.block.segments_writer import DiskWriter, ReplicaWrite
from stratum.util.fsio import fsync_dir

__all__ = [
    "DamageCallback",
    "Replica",
    "SegLocation",
    "SegmentStore",
    "SegmentUsage",
    "scan_disk",
]

SegmentKey = tuple[str, int]  # (disk id, segment number)

log = logging.getLogger("stratum.block.segments")

DEFAULT_SEGMENT_SIZE = 64 << 20
PROBE_EVERY = 64  # puts between attempts on a disk whose last write failed
LOCK_WAIT = 5.0  # seconds start() waits for another process to let go of a disk
GATHER_DELAY = 0.0005  # seconds a writer waits for sibling puts' records (see above)


@dataclass(frozen=True)
class SegmentUsage:
    """One segment file's space, as :meth:`SegmentStore.usage` measured it.

    ``live``: bytes of the records the metadata points at (as compaction last counted, less
    what was freed since), None before it counted this segment. ``sealed``: no process
    appends to it any more. ``written_before``: the records below this offset were written
    before this process started, so no put still under way can come to point at them.
    """

    disk_id: str
    file: SegmentFile
    live: int | None
    sealed: bool
    written_before: int

    @property
    def key(self) -> SegmentKey:
        return (self.disk_id, self.file.number)

    @property
    def reclaimable(self) -> int:
        """Bytes the file takes beyond its live records (0 while ``live`` is not known)."""
        return 0 if self.live is None else max(0, self.file.allocated - self.live)


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
        # Replicas one disk takes in normal placement: 1 with enough disks, more otherwise.
        self._spread = math.ceil(copies / len(disks))
        self._active_puts = 0  # put() calls under way; only the loop's thread changes it
        self._writers = [
            DiskWriter(
                d,
                copies,
                segment_size,
                self._orphan,
                shared=shared,
                gather=self._gather_delay,
                lock_wait=LOCK_WAIT,
            )
            for d in disks
        ]
        self._by_id = {w.disk.disk_id: w for w in self._writers}
        self._executor = executor
        self._freed: Counter[SegmentKey] = Counter()  # bytes freed since start
        self._live: dict[SegmentKey, int] = {}  # see set_live()
        self._freeing: set[asyncio.Task[Any]] = set()  # frees of orphaned records under way
        self._rr = 0
        self._state = "new"
        self._reader = SegmentReader({d.disk_id: d.seg_dir for d in disks}, executor, on_damage)

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Lock the disks, cut torn tails off recent segments, start the writer threads.

        Blocking (reads record headers of the newest segments): call at start-up or from an
        executor. A disk whose segment directory is unusable is logged and avoided; a disk
        locked by another process raises :class:`DiskWriteError`.
        """
        if self._state != "new":
            raise RuntimeError("a SegmentStore is started once")
        started: list[DiskWriter] = []
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
        while self._freeing:
            await asyncio.gather(*self._freeing, return_exceptions=True)
        self._state = "closed"
        for writer in self._writers:
            writer.stop()
        self._reader.close()
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
        return await self._reader.get(loc)

    async def delete(self, loc: SegLocation) -> dict[SegmentKey, int]:
        """Free the replicas of ``loc``: punch their holes (see the module docstring).

        Returns the bytes freed per (disk id, segment number). A replica that is not there any
        more (freed already, its segment removed) frees nothing, so deleting twice is harmless.
        """
        loop = asyncio.get_running_loop()
        freed = await loop.run_in_executor(self._executor, self._free_replicas, loc)
        self._count_freed(freed)
        return freed

    async def delete_many(self, locs: Sequence[SegLocation]) -> list[Exception | None]:
        """:meth:`delete` each of ``locs`` in one trip to a thread (the garbage collector frees
        a page of small objects at once: a trip per object cost more than the frees); for
        each, the error that stopped it or None."""
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._executor, self._free_each, locs)
        outcomes: list[Exception | None] = []
        for result in results:
            if isinstance(result, Exception):
                outcomes.append(result)
            else:
                self._count_freed(result)
                outcomes.append(None)
        return outcomes

    def _free_each(self, locs: Sequence[SegLocation]) -> list[dict[SegmentKey, int] | Exception]:
        results: list[dict[SegmentKey, int] | Exception] = []
        for loc in locs:
            try:
                results.append(self._free_replicas(loc))
            except Exception as exc:
                results.append(exc)
        return results

    def _count_freed(self, freed: Mapping[SegmentKey, int]) -> None:
        for key, size in freed.items():
            self._freed[key] += size
            if key in self._live:
                self._live[key] = max(0, self._live[key] - size)

    def _free_replicas(self, loc: SegLocation) -> dict[SegmentKey, int]:
        def expected(header: RecordHeader) -> bool:
            found = (header.volume_id, header.payload_size, header.payload_crc32)
            return found == (loc.volume_id, loc.size, loc.crc32) and (
                header.meta_size == loc.meta_size
            )

        freed: dict[SegmentKey, int] = {}
        for replica in loc.replicas:
            writer = self._by_id.get(replica.disk_id)
            if writer is None:
                continue
            path = writer.seg_dir / segment_name(replica.segment)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot free a record of %s: %s", path, exc)
                continue
            try:
                size = free_record(fd, replica.offset, expected)
            except OSError as exc:
                log.warning("cannot free the record at %d of %s: %s", replica.offset, path, exc)
                size = 0
            finally:
                os.close(fd)
            if size:
                key = (replica.disk_id, replica.segment)
                freed[key] = freed.get(key, 0) + size
        return freed

    async def repair(self, loc: SegLocation) -> SegLocation:
        """Check every replica; rewrite missing or corrupt ones and return the new location.

        New copies are appended to the current segments of healthy disks, keeping replicas on
        distinct disks (or distinct segments with fewer disks than copies). The caller commits
        the returned location; the replaced copies are counted as dead bytes. Returns ``loc``
        itself when nothing needed fixing. Raises :class:`VolumeUnreadable` when no replica is
        intact, :class:`StorageFull`/:class:`DiskWriteError` when a copy cannot be placed.
        """
        self._check_running()
        good, intact, damage = await self._reader.read_all(loc)
        if intact is None:
            raise unreadable(loc, damage)
        need = self.copies - len(good)
        if need <= 0 and not damage:
            return loc
        fresh: list[Replica] = []
        if need > 0:
            meta_raw, data = intact
            fresh = await self._write_replicas(
                id_bytes(loc.volume_id, "volume id"), meta_raw, data, loc.crc32, good, need
            )
        return replace(loc, replicas=(*good, *fresh))

    async def read_intact(self, loc: SegLocation) -> tuple[bytes, bytes] | None:
        """(meta bytes, payload) of an intact replica of ``loc``, or None; damage found is
        reported as for reads."""
        self._check_running()
        return (await self._reader.read_all(loc))[1]

    def freed_bytes(self) -> dict[SegmentKey, int]:
        """Bytes freed per (disk id, segment number) since start: deletes, and the records
        of failed or cancelled puts."""
        return dict(self._freed)

    # --- space and compaction -------------------------------------------------------------

    def set_live(self, live: Mapping[SegmentKey, int]) -> None:
        """Bytes of the records the metadata points at, per segment, as counted now (call on
        the event loop); a segment with none is named with 0. Frees from now on are taken
        off; a segment not named counts as not known (:attr:`SegmentUsage.live` None)."""
        self._live = dict(live)

    def usage(self) -> list[SegmentUsage]:
        """Every segment file of every disk with its space (blocking: stats every file)."""
        live = self._live.copy()
        out: list[SegmentUsage] = []
        for writer in self._writers:
            disk_id = writer.disk.disk_id
            try:
                files = measure(writer.seg_dir)
            except OSError:
                continue
            open_now = writer.open_segments
            for file in files:
                sealed = file.sealed or (
                    file.number in writer.at_start and file.number not in open_now
                )
                out.append(
                    SegmentUsage(
                        disk_id,
                        file,
                        live.get((disk_id, file.number)),
                        sealed,
                        writer.at_start.get(file.number, 0),
                    )
                )
        return out

    async def relocate(
        self, loc: SegLocation, old: Replica, meta_raw: bytes, data: bytes
    ) -> Replica:
        """Write a new copy of replica ``old`` of ``loc`` for compaction: in the compaction
        lane of the same disk when that keeps the replicas apart, else where a repair would
        put it. ``meta_raw`` and ``data`` must be the record's own (checked by the caller)."""
        self._check_running()
        volume_raw = id_bytes(loc.volume_id, "volume id")
        others = [r for r in loc.replicas if r != old]
        writer = self._by_id.get(old.disk_id)
        lane = writer.compaction_lane if writer is not None else -1
        taken = {r.segment for r in others if r.disk_id == old.disk_id}
        if writer is None or writer.failures or writer.lane_segment(lane) in taken:
            replicas = await self._write_replicas(volume_raw, meta_raw, data, loc.crc32, others, 1)
            return replicas[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Replica] = loop.create_future()
        writer.submit(ReplicaWrite(lane, volume_raw, meta_raw, data, loc.crc32, loop, future))
        return await future

    async def remove_segment(self, disk_id: str, number: int) -> None:
        """Delete a segment file compaction has emptied (and sync its directory)."""
        writer = self._by_id[disk_id]
        if number in writer.open_segments:
            raise ValueError(f"segment {number} of disk {disk_id} is still being written")
        self._reader.forget((disk_id, number))
        path = writer.seg_dir / segment_name(number)

        def unlink() -> None:
            os.unlink(path)
            fsync_dir(writer.seg_dir)

        await asyncio.get_running_loop().run_in_executor(self._executor, unlink)
        self._live.pop((disk_id, number), None)

    def close_removed_reads(self) -> None:
        """Close the files kept open for reads that another process removed (on the loop):
        an open file keeps its blocks allocated."""
        self._reader.close_unlinked()

    # --- writing --------------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._state != "running":
            raise RuntimeError(f"the segment store is {self._state}, not running")

    def _orphan(self, write: ReplicaWrite, replica: Replica) -> None:
        loc = SegLocation(
            write.volume_raw.hex(), len(write.data), write.crc, len(write.meta), (replica,)
        )
        self._free_later(loc)

    def _free_later(self, loc: SegLocation) -> None:
        """Free the record of a put that failed or was cancelled (on the loop). Once the store
        is closed it is left as it is, like the record of a put cut short by a crash."""
        if self._state != "running":
            return
        task = asyncio.ensure_future(self.delete(loc))
        self._freeing.add(task)
        task.add_done_callback(self._freeing.discard)

    def _targets(self, existing: Sequence[Replica]) -> list[tuple[DiskWriter, int]]:
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
        targets: list[tuple[DiskWriter, int]] = []
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

        def orphan(replica: Replica) -> None:
            self._free_later(
                SegLocation(volume_raw.hex(), len(data), crc, len(meta_raw), (replica,))
            )

        try:
            while attempt:
                futures = []
                for writer, lane in attempt:
                    futures.append(loop.create_future())
                    writer.submit(
                        ReplicaWrite(lane, volume_raw, meta_raw, data, crc, loop, futures[-1])
                    )
                outcomes = await asyncio.gather(*futures, return_exceptions=True)
                retry: list[tuple[DiskWriter, int]] = []
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
                future.cancel()  # the writer frees what it still writes
            for replica in written:
                orphan(replica)
            raise
        if len(written) < need:
            for replica in written:
                orphan(replica)
            if not errors:
                raise DiskWriteError("no disk is available for a replica")
            detail = "; ".join(str(e) for e in errors)
            volume = volume_raw.hex()
            raise type(errors[0])(
                f"volume {volume}: {len(written)} of {need} replicas written: {detail}"
            )
        return written

    def _gather_delay(self) -> float:
        # Asked by a writer thread when a record wakes it; a count read a moment stale only
        # costs or saves one short wait.
        return GATHER_DELAY if self._active_puts > 1 else 0.0


def scan_disk(disk: Disk) -> Iterator[tuple[int, SegmentRecord]]:
    """Every record on a disk as (segment number, record), oldest segment first (blocking).

    For rebuilding metadata: each record carries its volume id and meta. Torn tails and
    damaged records are handled as in :func:`scan_segment`.
    """
    for number in list_segments(disk.seg_dir):
        for record in scan_segment(disk.seg_dir / segment_name(number)):
            yield number, record
