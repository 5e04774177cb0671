"""Segment compaction: the space of deleted small objects that punched holes do not give back.

Small objects live as records in segment files (:mod:`stratum.block.segments`). When the
garbage collector frees one, a hole is punched over it and its blocks come back at once; what
stays allocated is the blocks a freed record shares with live neighbours (all of them, for
objects of a few KiB), and every freed record on a filesystem that cannot punch holes. A
compaction pass, in the background of the first server process every :data:`PASS_INTERVAL`
seconds, finds the segments worth rewriting and moves their live records elsewhere:

1. **Measure** each segment file (size, allocated blocks, sealed or not) and set it against
   the bytes of its live records. Those come from a walk of the metadata (every volume and
   every queued garbage volume, a page per read transaction, in an executor, giving way to
   requests between pages: :mod:`stratum.maintenance.compaction_walk`), done when a segment
   needs it (a newly sealed one, a candidate) and at least every :data:`ACCOUNTING_INTERVAL`,
   but never working more than a twentieth of the time (:data:`WALK_SHARE`); between walks the
   store takes off what it frees. There is no stored accounting to keep consistent: the
   figures are derived from the files and the metadata, so a restart loses nothing but one
   walk. The same walk counts what every disk stores (:meth:`TierStore.note_stored`).
2. **Choose** sealed segments (no process appends to them any more) whose allocation beyond
   their live bytes is at least :data:`MIN_RECLAIM` (a quarter of a smaller segment) and half
   the allocation, or whose live bytes are under 1/16 of their size (mostly holes), or that
   hold nothing live at all.
3. **Move** each live record of a chosen segment, :data:`BATCH_BYTES` at a time: read it and
   check its CRCs (a damaged one is taken from an intact replica instead, or left for the
   scrub), write a new copy (:meth:`SegmentStore.relocate`), then commit in one metadata
   transaction, for each record, the new replica in place of the old one **only if the volume
   still names the record that was read** (an overwrite, delete, tier move or repair
   meanwhile wins, and the new copy is freed), queueing the old replica for the garbage
   collector. Copying runs at most :data:`RATE` bytes per second.
4. The garbage collector frees the old replicas like any retired volume: not while a read of
   the volume is in flight, and with worker processes only after their grace period. A GET
   that looked the location up before the commit therefore still reads the old copy.
5. **Remove** a segment file once a scan finds nothing left in it but freed records.

The parts of a multipart upload in progress are not moved either: completing the upload copies
their locations into the object's record without checking them, so a move in between would
leave the object pointing at a copy the collector frees.

Records the metadata does not point at are never moved, and freed only when they are certainly
garbage: written before this process started (no write under way can still come to point at
them), a copy of a volume the metadata knows at another place (a compaction or repair whose
commit lost, or was cut short by a crash), and not named by that volume when it is read just
before (the walk is no snapshot, so it may have missed a volume that came to name it).
Anything else (a record of a kind this walk does not know) keeps its segment.

Crash safety: a crash after copying and before the commit leaves the old location in place
and the copies unreferenced (freed when their segment, marked as compaction output and left
unsealed by the crash, is checked at the next start); a crash after the commit leaves the new
location, the old replica queued for the collector; a crash before a removal leaves an empty
segment, removed at the next pass. No step depends on in-memory state surviving.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from stratum.block.segments import SegmentKey, SegmentStore, SegmentUsage
from stratum.block.segments_format import (
    RECORD_HEADER_SIZE,
    RecordHeader,
    Replica,
    SegLocation,
    looks_freed,
    read_full,
    segment_name,
    walk_headers,
)
from stratum.block.tierstore import TierStore
from stratum.maintenance.compaction_walk import (
    Ref,
    known_elsewhere,
    location_at,
    names_replica,
    put_location_at,
    still_live,
    still_names,
    walk,
)
from stratum.meta import catalog
from stratum.meta.records import VolumeRecord
from stratum.meta.store import Tx
from stratum.service.objects import ObjectService
from stratum.util.clock import Clock
from stratum.util.pacing import Pacer
from stratum.util.periodic import Periodic

log = logging.getLogger("stratum.compaction")

PASS_INTERVAL = 30.0  # seconds between passes
ACCOUNTING_INTERVAL = 600.0  # a walk of the metadata at least this often
WALK_SHARE = 20  # a walk waits at least this many times as long as the last one took
RATE = 16 << 20  # bytes moved per second at most
BATCH_BYTES = 1 << 20  # bytes of records moved per metadata commit
PASS_BYTES = 256 << 20  # bytes moved per pass at most
MIN_RECLAIM = 64 << 10  # a segment is rewritten only to give back at least this much
MOSTLY_HOLES = 16  # ... or when its live bytes are under 1/MOSTLY_HOLES of its size


@dataclass
class Found:
    """A record of the segment being compacted, as read."""

    header: RecordHeader
    meta_raw: bytes
    payload: bytes
    intact: bool
    freed: bool


@dataclass
class Move:
    ref: Ref
    loc: SegLocation
    old: Replica
    meta_raw: bytes
    payload: bytes
    new: Replica | None = None


@dataclass
class PassFigures:
    """What a pass did (and, summed, what compaction has done since start)."""

    walks: int = 0
    segments: int = 0  # segments compacted (scanned to move their records)
    moved: int = 0  # records moved
    moved_bytes: int = 0
    lost_races: int = 0  # moves whose volume changed meanwhile (the copy was freed)
    strays: int = 0  # stray copies freed
    removed: int = 0  # segment files removed
    removed_bytes: int = 0  # what they took on the disks

    def add(self, other: PassFigures) -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)


def read_records(path: os.PathLike[str], headers: Sequence[RecordHeader]) -> list[Found]:
    """Read and check the records of ``headers`` in a segment file (blocking)."""
    out: list[Found] = []
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for header in headers:
            raw = read_full(fd, header.record_size, header.offset)
            body = memoryview(raw)[RECORD_HEADER_SIZE:]
            meta_raw = bytes(body[: header.meta_size])
            payload = bytes(body[header.meta_size :])
            intact = (
                len(raw) == header.record_size
                and zlib.crc32(meta_raw) == header.meta_crc32
                and zlib.crc32(payload) == header.payload_crc32
            )
            freed = not intact and looks_freed(body, header.offset + RECORD_HEADER_SIZE)
            out.append(Found(header, meta_raw, payload, intact, freed))
    finally:
        os.close(fd)
    return out


def list_headers(path: os.PathLike[str]) -> list[RecordHeader]:
    """The valid record headers of a segment file, in order (blocking)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    try:
        return list(walk_headers(fd, os.fstat(fd).st_size))
    finally:
        os.close(fd)


def _batches(headers: Sequence[RecordHeader]) -> Iterator[list[RecordHeader]]:
    batch: list[RecordHeader] = []
    size = 0
    for header in headers:
        batch.append(header)
        size += header.record_size
        if size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


@dataclass
class Job:
    """One segment to compact, with what the walk found pointing into it."""

    tier: TierStore
    segment: SegmentUsage
    refs: dict[int, Ref]
    strays_only: bool = False  # only free stray copies (not worth compacting otherwise)
    moved: int = 0  # records moved out
    live: int = 0  # live records left in place (strays_only)
    waiting: int = 0  # records the collector has yet to free
    kept: int = 0  # bytes of records that must stay (not ours to judge, or unreadable)

    @property
    def store(self) -> SegmentStore:
        assert self.tier.segments is not None
        return self.tier.segments

    @property
    def key(self) -> SegmentKey:
        return self.segment.key

    @property
    def path(self) -> os.PathLike[str]:
        disk = next(d for d in self.tier.disks if d.disk_id == self.segment.disk_id)
        return disk.seg_dir / segment_name(self.segment.file.number)

    def replica(self, offset: int) -> Replica:
        return Replica(self.segment.disk_id, self.segment.file.number, offset)


def _switch(tx: Tx, moves: Sequence[Move]) -> list[bool]:
    """Point each volume at its record's new copy if its location still names the record
    that was copied (:func:`_still_there`), and queue the old copy for the collector; per
    move, whether it was switched."""
    done: list[bool] = []
    for move in moves:
        new = move.new
        assert new is not None
        volume = catalog.get_volume(tx, move.ref.volume_id)
        current = location_at(volume, move.ref.path) if volume is not None else None
        if volume is None or current is None or not still_names(current, move.ref, move.old):
            done.append(False)
            continue
        replicas = [list(new) if tuple(r) == move.old else r for r in current["replicas"]]
        put_location_at(volume, move.ref.path, {**current, "replicas": replicas})
        catalog.put_volume(tx, volume)
        # The old copy goes the way of a retired volume, under the volume's id so that reads
        # of the volume in flight keep it (only the one replica: the others stay in use).
        old = VolumeRecord(
            volume_id=volume.volume_id,
            tier=volume.tier,
            layout="seg",
            location={**current, "replicas": [list(move.old)]},
            size=move.loc.size,
            md5=volume.md5,
            created=volume.created,
            bucket=volume.bucket,
            key=volume.key,
        )
        gc_key = f"{volume.volume_id}.compacted-{new.disk_id[:8]}-{new.segment}-{new.offset}"
        catalog.retire_location(tx, gc_key, old)
        done.append(True)
    return done


class Compactor:
    """Segment compaction for every local tier (see the module docstring).

    ``rate`` bytes per second at most; a pass every ``interval`` seconds once started.
    """

    def __init__(
        self,
        service: ObjectService,
        clock: Clock,
        *,
        rate: int = RATE,
        interval: float = PASS_INTERVAL,
    ) -> None:
        self.service = service
        self.meta = service.meta
        self.clock = clock
        self.rate = rate
        self.totals = PassFigures()
        self._kept: dict[SegmentKey, int] = {}  # bytes a scan found must stay, per segment
        self._checked: set[SegmentKey] = set()  # interrupted compaction output, checked
        self._last_walk = -math.inf  # clock time
        self._walk_took = 0.0  # seconds
        self._walk_ended = -math.inf  # time.monotonic()
        self._lock = asyncio.Lock()
        self._passes = Periodic(
            "compaction", self.run_pass, interval=interval, log=log, what="segment compaction pass"
        )

    @property
    def tiers(self) -> list[TierStore]:
        return [t for t in self.service.tiers.values() if t.segments is not None]

    async def start(self) -> None:
        self._passes.start()

    async def stop(self) -> None:
        await self._passes.stop()

    async def account(self) -> None:
        """Count now what each disk stores and could reclaim (:meth:`TierStore.note_stored`),
        compacting nothing: for ``stratum disk list`` with no server running."""
        async with self._lock:
            await self.plan(force=True)

    # -- a pass -----------------------------------------------------------------------

    async def run_pass(self, *, force_walk: bool = False) -> PassFigures:
        """Measure, walk the metadata if needed (``force_walk``: now, whatever the
        schedule), compact what is worth it. Returns what the pass did."""
        async with self._lock:
            figures = PassFigures()
            budget = PASS_BYTES
            for job in await self.plan(force=force_walk, figures=figures):
                if budget <= 0:
                    break
                budget -= await self.compact(job, figures)
            self.totals.add(figures)
            if figures.moved or figures.removed or figures.strays:
                log.info(
                    "compaction: %d records (%d bytes) moved, %d segment files removed "
                    "(%d bytes), %d stray copies freed",
                    figures.moved,
                    figures.moved_bytes,
                    figures.removed,
                    figures.removed_bytes,
                    figures.strays,
                )
            return figures

    def _suspect(self, segment: SegmentUsage) -> bool:
        """Compaction output that a crash left unsealed: it may hold copies never committed."""
        file = segment.file
        return (
            file.compacted
            and not file.sealed
            and segment.written_before > 0
            and segment.key not in self._checked
        )

    def _worth(self, segment: SegmentUsage, live: int) -> bool:
        if not segment.sealed:
            return False
        kept = self._kept.get(segment.key, 0)
        busy = live + kept
        if busy == 0:
            return True  # nothing live: remove the file
        reclaim = segment.file.allocated - busy
        enough = min(MIN_RECLAIM, segment.file.size // 4)  # (small segments: a quarter)
        if reclaim >= enough and 2 * reclaim >= segment.file.allocated:
            return True
        return not kept and busy * MOSTLY_HOLES <= segment.file.size

    async def plan(self, *, force: bool = False, figures: PassFigures | None = None) -> list[Job]:
        """The segments to compact now, best first, with what points into them (walking the
        metadata when a segment needs it, it is due, or ``force``)."""
        loop = asyncio.get_running_loop()
        usage: list[tuple[TierStore, list[SegmentUsage]]] = []
        wanted: set[SegmentKey] = set()
        for tier in self.tiers:
            assert tier.segments is not None
            measured = await loop.run_in_executor(None, tier.segments.usage)
            usage.append((tier, measured))
            for segment in measured:
                if segment.sealed and (
                    segment.live is None
                    or self._worth(segment, segment.live)
                    or self._suspect(segment)
                ):
                    wanted.add(segment.key)
        due = self.clock.now() - self._last_walk >= ACCOUNTING_INTERVAL
        if not (force or wanted or due):
            return []
        if not force and time.monotonic() - self._walk_ended < WALK_SHARE * self._walk_took:
            return []
        pacer = Pacer()
        walked = await loop.run_in_executor(
            None, functools.partial(walk, self.meta, wanted, pacer=pacer)
        )
        self._walk_ended = time.monotonic()
        self._walk_took = pacer.worked  # its work, not its pauses for requests
        self._last_walk = self.clock.now()
        if figures is not None:
            figures.walks += 1
        jobs: list[Job] = []
        for tier, measured in usage:
            assert tier.segments is not None
            tier.segments.set_live({s.key: walked.live.get(s.key, 0) for s in measured})
            await loop.run_in_executor(None, tier.note_stored, dict(walked.stored), self._last_walk)
            for segment in measured:
                live = walked.live.get(segment.key, 0)
                if segment.key not in wanted:
                    continue
                worth = self._worth(segment, live)
                if worth or self._suspect(segment):
                    current = SegmentUsage(
                        segment.disk_id,
                        segment.file,
                        live,
                        segment.sealed,
                        segment.written_before,
                    )
                    refs = walked.refs.get(segment.key, {})
                    jobs.append(Job(tier, current, refs, strays_only=not worth))
        jobs.sort(key=lambda j: (j.segment.live != 0, -j.segment.reclaimable))
        return jobs

    # -- one segment ------------------------------------------------------------------

    async def compact(self, job: Job, figures: PassFigures) -> int:
        """Move the live records out of one segment, remove it if nothing is left; returns
        the bytes read."""
        loop = asyncio.get_running_loop()
        headers = await loop.run_in_executor(None, list_headers, job.path)
        seen = {h.offset for h in headers}
        for offset, ref in job.refs.items():
            if not ref.retired and offset not in seen:
                # A live record whose header is damaged: the scrub repairs it elsewhere first.
                job.kept += SegLocation.from_dict(ref.location).record_size
        started = time.monotonic()
        done = 0
        figures.segments += 1
        for batch in _batches(headers):
            found = await loop.run_in_executor(None, read_records, job.path, batch)
            moves, strays = await self.copy(job, found)
            await self.commit(job, moves, figures)
            await self.free_strays(job, strays, figures)
            done += sum(h.record_size for h in batch)
            if self.rate > 0:
                await asyncio.sleep(max(0.0, done / self.rate - (time.monotonic() - started)))
        if job.segment.file.compacted:
            self._checked.add(job.key)
        self._kept[job.key] = job.kept
        if not (job.moved or job.live or job.waiting or job.kept):
            await self.remove(job, figures)
        return done

    async def copy(self, job: Job, found: Sequence[Found]) -> tuple[list[Move], list[Found]]:
        """Sort a batch of records and write new copies of the live ones: (moves with their
        new replicas, stray copies to free)."""
        moves: list[Move] = []
        strays: list[Found] = []
        for count, record in enumerate(found):
            if count % 64 == 63:
                await asyncio.sleep(0)  # a batch of tiny records: let requests in between
            header = record.header
            ref = job.refs.get(header.offset)
            if ref is None:
                if record.freed:
                    continue
                if self._is_stray(job, record):
                    strays.append(record)
                else:
                    job.kept += header.record_size
                continue
            if ref.retired:
                job.waiting += 1
                continue
            if job.strays_only or (not ref.path and _upload_part(record)):
                job.live += 1
                continue
            loc = SegLocation.from_dict(ref.location)
            old = job.replica(header.offset)
            same = (header.volume_id, header.payload_size, header.payload_crc32) == (
                loc.volume_id,
                loc.size,
                loc.crc32,
            )
            if record.intact and same and header.meta_size == loc.meta_size:
                meta_raw, payload = record.meta_raw, record.payload
            else:
                live = functools.partial(still_live, ref=ref, old=old)
                if record.freed or not self.meta.read(live):
                    continue  # freed since the walk (its volume overwritten or deleted)
                intact = await job.store.read_intact(loc)
                if intact is None:
                    log.warning(
                        "volume %s: no intact copy to move; left to the scrub", loc.volume_id
                    )
                    job.kept += header.record_size
                    continue
                meta_raw, payload = intact
            moves.append(Move(ref, loc, old, meta_raw, payload))
        written = await asyncio.gather(
            *(job.store.relocate(m.loc, m.old, m.meta_raw, m.payload) for m in moves),
            return_exceptions=True,
        )
        kept: list[Move] = []
        for move, outcome in zip(moves, written, strict=True):
            if isinstance(outcome, Replica):
                move.new = outcome
                kept.append(move)
            elif isinstance(outcome, Exception):
                log.warning("volume %s: moving a record failed: %s", move.loc.volume_id, outcome)
                job.kept += move.loc.record_size
            else:
                raise outcome
        return kept, strays

    def _is_stray(self, job: Job, record: Found) -> bool:
        if not record.intact or record.header.offset >= job.segment.written_before:
            return False
        try:
            meta = json.loads(record.meta_raw)
        except ValueError:
            meta = None
        meta = meta if isinstance(meta, dict) else None

        def stray(tx: Tx) -> bool:
            # The walk is no snapshot: a record it found no holder for may be one its volume
            # came to name while the walk ran. Never free what the volume names now.
            replica = job.replica(record.header.offset)
            return known_elsewhere(tx, record.header, meta) and not names_replica(
                tx, record.header, meta, replica
            )

        return self.meta.read(stray)

    async def commit(self, job: Job, moves: Sequence[Move], figures: PassFigures) -> None:
        """Switch the volumes to the new copies (where they did not change meanwhile); free
        the copies of those that did."""
        if not moves:
            return
        switched = await self.meta.write(functools.partial(_switch, moves=moves))
        for move, ok in zip(moves, switched, strict=True):
            assert move.new is not None
            if ok:
                job.moved += 1
                figures.moved += 1
                figures.moved_bytes += move.loc.record_size
            else:
                figures.lost_races += 1
                await job.store.delete(_single(move.loc, move.new))
        self.service.wake_gc()

    async def free_strays(self, job: Job, strays: Sequence[Found], figures: PassFigures) -> None:
        for record in strays:
            header = record.header
            loc = SegLocation(
                header.volume_id,
                header.payload_size,
                header.payload_crc32,
                header.meta_size,
                (job.replica(header.offset),),
            )
            if await job.store.delete(loc):
                figures.strays += 1

    async def remove(self, job: Job, figures: PassFigures) -> None:
        await job.store.remove_segment(job.segment.disk_id, job.segment.file.number)
        self._kept.pop(job.key, None)
        figures.removed += 1
        figures.removed_bytes += job.segment.file.allocated


def _upload_part(record: Found) -> bool:
    """Whether a record is a part of a multipart upload still in progress (its own volume):
    completing the upload copies the part's location into the object's without checking it
    is unchanged, so the part stays where it is until then."""
    try:
        meta = json.loads(record.meta_raw)
    except ValueError:
        return False
    return isinstance(meta, dict) and meta.get("kind") == "part"


def _single(loc: SegLocation, replica: Replica) -> SegLocation:
    return SegLocation(loc.volume_id, loc.size, loc.crc32, loc.meta_size, (replica,))
