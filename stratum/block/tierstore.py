"""The storage of one tier: small objects in replicated segments, large ones erasure coded.

The object service sees one interface per tier; which layout holds a volume is
recorded in its :class:`~stratum.meta.records.VolumeRecord` (``layout`` "seg" or "ec").
What backs the tier's disk directories (plain directories or ZFS datasets) is its
:class:`~stratum.pool.Pool`: it prepares each disk before it is opened, and every probe asks
it for each disk's backing, capacity and health (a failed zpool makes its disks offline).

Capacity, for the tiering watermarks, counts what Stratum stores, not what the filesystems
say is used: their used bytes less the dead bytes Stratum will reclaim (segment space not yet
compacted, :attr:`SegmentUsage.reclaimable`) and less what is on them besides Stratum's
volumes (other files, the metadata store, as measured at the last accounting: compaction
counts the bytes of every live volume, :meth:`TierStore.note_stored`). Deleted data thus
never pushes a tier over its high watermark, and neither do other programs' files. The
accounting runs in the background of the first server process every few minutes; until its
first count the other files are counted as stored.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratum.block.disk import IDENTITY_FILE, Disk, DiskError, open_disk
from stratum.block.erasure import ECLocation, ECParams, ErasureStore, Hasher
from stratum.block.segments import SegLocation, SegmentStore, SegmentUsage
from stratum.config import Config, TierConfig
from stratum.pool import Capacity, DirectoryPool, DiskBacking, Pool, PoolError

log = logging.getLogger("stratum.storage")

__all__ = ["Hasher", "TierLayout", "TierStore"]


@dataclass(frozen=True)
class TierLayout:
    name: str
    disks: tuple[Path, ...]
    data_shards: int
    parity_shards: int
    block_size: int
    segment_size: int


DISKS_KEY = (
    b"disks"  # metadata info: {disk path: disk id} as last opened, to recognise replaced disks
)


@dataclass(frozen=True)
class Accounting:
    """The last count of what the tier's disks hold (see the module docstring)."""

    at: float  # clock time of the count
    stored: dict[str, int]  # disk id -> bytes of live volumes on it (shards, segment records)
    other: int  # bytes on the tier's filesystems that are not live volumes nor reclaimable


def tier_layouts(config: Config) -> dict[str, TierLayout]:
    """The local tiers the config asks for (hot always; warm when it has disks)."""
    storage = config.storage
    out: dict[str, TierLayout] = {}
    tiers: dict[str, TierConfig] = {"hot": config.tiers.hot, "warm": config.tiers.warm}
    for name, tier in tiers.items():
        disks = tier.disks
        if not disks:
            if name != "hot":
                continue
            disks = (storage.data_dir / "disks" / "hot",)
        out[name] = TierLayout(
            name=name,
            disks=tuple(disks),
            data_shards=tier.data_shards,
            parity_shards=tier.parity_shards,
            block_size=storage.block_size,
            segment_size=storage.segment_size,
        )
    return out


class TierStore:
    """Both storage layouts over one tier's disks."""

    def __init__(
        self,
        layout: TierLayout,
        executor: concurrent.futures.Executor,
        on_damage: Callable[[str, str], None] | None = None,
        pool: Pool | None = None,
    ) -> None:
        self.layout = layout
        self.pool: Pool = pool or DirectoryPool()
        self._backing: dict[Path, DiskBacking] = {}  # as of the last probe
        self._executor = executor
        self._on_damage = on_damage or (lambda volume_id, disk_id: None)
        self.disks: list[Disk] = []
        self.erasure: ErasureStore | None = None
        self.segments: SegmentStore | None = None
        self.replaced: list[Disk] = []  # disks that came back empty: to be refilled
        self.accounting: Accounting | None = None
        self._reclaimable: dict[str, int] = {}  # disk id -> bytes, as of the last probe

    def open(self, known_ids: Mapping[str, str] | None = None, *, shared: bool = False) -> None:
        """Open the disks (blocking; raises DiskError naming a bad path) and sweep orphans.

        ``known_ids`` maps a disk path to the id metadata last saw there: a directory that
        comes back without its identity file is a replaced disk and takes that id again.
        ``shared``: another server process (the primary) opened these disks first and keeps
        serving from them: prepare nothing, sweep nothing, append only to new segments.
        """
        known = known_ids or {}
        for path in self.layout.disks:
            try:
                if not shared:
                    self.pool.prepare(path)  # e.g. create and mount its ZFS dataset
            except PoolError as exc:
                raise DiskError(str(exc)) from exc
            expected = known.get(str(path.absolute()))
            if shared and expected is not None:
                # The primary opened it moments ago; touch nothing (if it vanished since,
                # the probes find it offline, rather than this recreating it empty).
                self.disks.append(Disk(path=path.absolute(), disk_id=expected))
                continue
            fresh = not (path / IDENTITY_FILE).exists()
            disk = open_disk(path, create=not shared, expected_id=expected)
            self.disks.append(disk)
            if fresh and str(path.absolute()) in known:
                self.replaced.append(disk)
        params = ECParams(
            data_shards=self.layout.data_shards,
            parity_shards=self.layout.parity_shards,
            block_size=self.layout.block_size,
        )
        self.erasure = ErasureStore(
            self.disks,
            params,
            self._executor,
            on_degraded=lambda d: self._on_damage(d.volume_id, d.disk_id),
        )
        if not shared:  # the other processes' writes in progress live in tmp/ too
            self.erasure.sweep_tmp()
        self.segments = SegmentStore(
            self.disks,
            copies=self.layout.parity_shards + 1,
            executor=self._executor,
            segment_size=self.layout.segment_size,
            on_damage=lambda loc, replica, why: self._on_damage(loc.volume_id, replica.disk_id),
            shared=shared,
        )
        self.segments.start()
        self._backing = self.pool.describe([d.path for d in self.disks])

    def share(self) -> None:
        """After :meth:`open`: let worker processes open this tier ``shared`` (see above)."""
        if self.segments is not None:
            self.segments.share()

    def disk_ids(self) -> dict[str, str]:
        return {str(d.path): d.disk_id for d in self.disks}

    def probe(self) -> dict[str, str]:
        """Each disk's state now (blocking): "online", or "offline" with the reason.

        Also refreshes what :meth:`describe_disk` reports."""
        states: dict[str, str] = {}
        backing = self.pool.describe([d.path for d in self.disks])
        self._backing = backing
        if self.accounting is not None:
            self._reclaimable = self._reclaimable_by_disk(self._segment_usage())
        for disk in self.disks:
            ident = disk.path / IDENTITY_FILE
            problem = backing[disk.path].problem if disk.path in backing else ""
            try:
                if problem:  # a failed zpool: leave its files alone (I/O there may hang)
                    states[disk.disk_id] = f"offline: {problem}"
                elif not disk.path.is_dir():
                    states[disk.disk_id] = "offline: directory missing"
                elif not ident.exists():
                    states[disk.disk_id] = "offline: identity file missing"
                elif disk.disk_id not in ident.read_text():
                    states[disk.disk_id] = "offline: another disk is mounted here"
                else:
                    states[disk.disk_id] = "online"
            except OSError as exc:
                states[disk.disk_id] = f"offline: {exc.strerror or exc}"
        return states

    def describe_disk(self, disk_id: str) -> dict[str, object]:
        """Backing ("directory" or "zfs"), dataset, zpool, health and capacity of a disk as
        of the last probe, and what Stratum stores on it and could reclaim (None before the
        first accounting); never blocks."""
        for disk in self.disks:
            if disk.disk_id == disk_id and disk.path in self._backing:
                described = self._backing[disk.path].to_dict()
                accounting = self.accounting
                described["stored_bytes"] = (
                    accounting.stored.get(disk_id, 0) if accounting is not None else None
                )
                described["reclaimable_bytes"] = (
                    self._reclaimable.get(disk_id, 0) if accounting is not None else None
                )
                return described
        return {}

    def describe_disks(self) -> dict[str, dict[str, object]]:
        """:meth:`describe_disk` of every disk, by disk id."""
        return {d.disk_id: self.describe_disk(d.disk_id) for d in self.disks}

    def capacity(self) -> Capacity:
        """What the tier stores and could hold, for the watermarks (blocking; see the module
        docstring): space shared by several disks (one filesystem, one zpool) counted once,
        a ZFS quota honoured."""
        raw = self.pool.capacity([d.path for d in self.disks])
        if self.accounting is None:
            return raw
        reclaimable = sum(self._reclaimable_by_disk(self._segment_usage()).values())
        other = self.accounting.other
        used = max(0, raw.used - reclaimable - other)
        return Capacity(used, max(used, raw.total - other))

    def note_stored(self, stored: Mapping[str, int], at: float) -> None:
        """Take a count of the bytes of live volumes on each disk (blocking: measures the
        filesystems to know what else is on them)."""
        raw = self.pool.capacity([d.path for d in self.disks])
        reclaimable = self._reclaimable_by_disk(self._segment_usage())
        other = max(0, raw.used - sum(reclaimable.values()) - sum(stored.values()))
        self._reclaimable = reclaimable
        self.accounting = Accounting(
            at, {d.disk_id: stored.get(d.disk_id, 0) for d in self.disks}, other
        )

    def _segment_usage(self) -> list[SegmentUsage]:
        return self.segments.usage() if self.segments is not None else []

    @staticmethod
    def _reclaimable_by_disk(usage: Sequence[SegmentUsage]) -> dict[str, int]:
        out: Counter[str] = Counter()
        for segment in usage:
            out[segment.disk_id] += segment.reclaimable
        return dict(out)

    def set_offline(self, disk_ids: set[str]) -> None:
        """After each probe (on the loop): which disks are offline. Also closes the segment
        files kept open for reads that compaction removed meanwhile."""
        if self.erasure is not None:
            self.erasure.offline = set(disk_ids)
        if self.segments is not None:
            self.segments.close_removed_reads()

    def online_count(self) -> int:
        offline = self.erasure.offline if self.erasure is not None else set()
        return sum(1 for d in self.disks if d.disk_id not in offline)

    def min_disks_for_writes(self) -> int:
        """New writes need k+1 online disks (or all of them, in a smaller pool)."""
        return min(self.layout.data_shards + 1, len(self.disks))

    async def close(self) -> None:
        if self.segments is not None:
            await self.segments.close()

    def _ec(self) -> ErasureStore:
        assert self.erasure is not None, "TierStore.open() first"
        return self.erasure

    def _seg(self) -> SegmentStore:
        assert self.segments is not None, "TierStore.open() first"
        return self.segments

    async def put_small(
        self, volume_id: str, data: bytes, meta: Mapping[str, Any]
    ) -> dict[str, Any]:
        loc = await self._seg().put(volume_id, data, meta)
        return loc.to_dict()

    def ec_writer(self, volume_id: str, meta: Mapping[str, Any], hashers: Sequence[Hasher]) -> Any:
        return self._ec().writer(volume_id, meta, hashers)

    async def read(
        self, layout: str, location: Mapping[str, Any], start: int, end: int
    ) -> AsyncIterator[bytes]:
        if layout == "seg":
            data = await self._seg().get(SegLocation.from_dict(dict(location)))
            if end > start:
                yield data[start:end]
            return
        async for chunk in self._ec().read(ECLocation.from_dict(dict(location)), start, end):
            yield chunk

    async def delete(self, layout: str, location: Mapping[str, Any]) -> None:
        if layout == "seg":
            await self._seg().delete(SegLocation.from_dict(dict(location)))
        else:
            await self._ec().delete(ECLocation.from_dict(dict(location)))

    async def delete_small(self, locations: Sequence[Mapping[str, Any]]) -> list[Exception | None]:
        """Free many small objects' data (layout ``seg``) in one trip to a thread; for each,
        the error that stopped it or None (see :meth:`SegmentStore.delete_many`)."""
        parsed: list[SegLocation | Exception] = []
        for location in locations:
            try:
                parsed.append(SegLocation.from_dict(dict(location)))
            except Exception as exc:  # a malformed record: that entry fails alone
                parsed.append(exc)
        good = [loc for loc in parsed if isinstance(loc, SegLocation)]
        done = iter(await self._seg().delete_many(good))
        return [loc if isinstance(loc, Exception) else next(done) for loc in parsed]
