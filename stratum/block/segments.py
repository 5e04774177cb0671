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
and the replicas it did write are counted as dead bytes.

Reads check every byte against the location and fall back to the next replica, reporting
damage; records in the page cache are read on the event loop
(:mod:`stratum.block.segments_reader`).

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
import logging
import math
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any

from stratum.block.disk import Disk
from stratum.block.errors import DiskWriteError, StorageError
from stratum.block.segments_format import (
    MAX_PAYLOAD_SIZE,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
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
from stratum.block.segments_writer import DiskWriter, ReplicaWrite

__all__ = ["DamageCallback", "Replica", "SegLocation", "SegmentStore", "scan_disk"]

log = logging.getLogger("stratum.block.segments")

DEFAULT_SEGMENT_SIZE = 64 << 20
PROBE_EVERY = 64  # puts between attempts on a disk whose last write failed
LOCK_WAIT = 5.0  # seconds start() waits for another process to let go of a disk
GATHER_DELAY = 0.0005  # seconds a writer waits for sibling puts' records (see above)


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
        self._dead: Counter[tuple[str, int]] = Counter()
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
        record_size = RECORD_HEADER_SIZE + len(meta_raw) + len(data)
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
