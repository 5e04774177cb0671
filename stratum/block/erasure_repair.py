"""Verifying and repairing erasure-coded volumes.

A verify reads every block of every shard (one executor job per shard, so disks work in
parallel) and reports each shard's state. A repair rebuilds the bad shards stripe by stripe from
``k`` good blocks each, checks the rebuilt data against the volume's MD5 before replacing any
shard, and commits the new shards like a writer does (tmp file, fsync, rename, directory fsync).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratum.block.codec import Block
from stratum.block.erasure_location import ECLocation, expected_shard, place_shards
from stratum.block.erasure_writer import tmp_path
from stratum.block.errors import ShardFormatError, VolumeUnreadable
from stratum.block.jobs import wait_all
from stratum.block.shardfile import ShardFileReader, ShardFileWriter, ShardFooter, ShardHeader

if TYPE_CHECKING:
    from stratum.block.erasure import ErasureStore


class ShardState(StrEnum):
    OK = "ok"
    DISK_MISSING = "disk-missing"  # its disk id is not in the pool (removed or replaced)
    MISSING = "missing"  # no file
    DAMAGED = "damaged"  # unreadable, or bad header/footer/length
    BAD_BLOCKS = "bad-blocks"  # header and footer fine, some blocks fail their CRC


@dataclass(frozen=True)
class ShardReport:
    shard_index: int
    disk_id: str
    state: ShardState
    bad_stripes: tuple[int, ...] = ()  # for BAD_BLOCKS
    detail: str = ""


@dataclass(frozen=True)
class VerifyReport:
    """Result of :meth:`ErasureStore.verify` / :meth:`ErasureStore.repair`.

    ``location`` is the volume's location after the operation: a repair that had to move a
    shard off a disk no longer in the pool returns a location with new disk ids, which the
    caller must store in place of the old one.
    """

    location: ECLocation
    shards: tuple[ShardReport, ...]
    unreadable_stripes: tuple[int, ...] = ()
    repaired: tuple[int, ...] = ()  # shard indices rewritten

    @property
    def clean(self) -> bool:
        return all(s.state is ShardState.OK for s in self.shards)

    @property
    def readable(self) -> bool:
        return not self.unreadable_stripes

    @property
    def bad_shards(self) -> tuple[int, ...]:
        return tuple(s.shard_index for s in self.shards if s.state is not ShardState.OK)


def verify_shard(store: ErasureStore, loc: ECLocation, index: int) -> ShardReport:
    """Read every block of one shard (blocking; one job per shard, so disks work in parallel)."""
    disk_id = loc.disks[index]
    path = store.shard_path(loc, index)
    if path is None:
        return ShardReport(index, disk_id, ShardState.DISK_MISSING, detail="disk not in pool")
    try:
        reader = ShardFileReader(path, expected_shard(loc, index))
    except FileNotFoundError:
        return ShardReport(index, disk_id, ShardState.MISSING, detail=f"{path} not found")
    except (OSError, ShardFormatError) as exc:
        return ShardReport(index, disk_id, ShardState.DAMAGED, detail=str(exc))
    bad: list[int] = []
    detail = ""
    try:
        for s in range(loc.layout.stripe_count):
            try:
                reader.read_block(s)
            except (OSError, ShardFormatError) as exc:
                bad.append(s)
                detail = detail or str(exc)
    finally:
        reader.close()
    if bad:
        return ShardReport(index, disk_id, ShardState.BAD_BLOCKS, tuple(bad), detail)
    return ShardReport(index, disk_id, ShardState.OK)


def unreadable_stripes(loc: ECLocation, shards: Sequence[ShardReport]) -> tuple[int, ...]:
    """Stripes with fewer than ``k`` good blocks according to ``shards``."""
    usable = sum(1 for s in shards if s.state in (ShardState.OK, ShardState.BAD_BLOCKS))
    lost_at: dict[int, int] = {}
    for s in shards:
        for stripe in s.bad_stripes:
            lost_at[stripe] = lost_at.get(stripe, 0) + 1
    if usable < loc.data_shards:
        return tuple(range(loc.layout.stripe_count))
    return tuple(sorted(st for st, lost in lost_at.items() if usable - lost < loc.data_shards))


async def verify_volume(store: ErasureStore, loc: ECLocation) -> VerifyReport:
    jobs = [store.submit(verify_shard, store, loc, i) for i in range(loc.shard_count)]
    shards = tuple(await wait_all(jobs))
    return VerifyReport(loc, shards, unreadable_stripes(loc, shards))


class Repair:
    """Rebuilds a volume's bad shards stripe by stripe from ``k`` good blocks each.

    The rebuilt data is checked against the volume's MD5 before any shard is replaced, so a
    repair never commits wrong data. Shards whose disk left the pool move to the pool disk
    holding the fewest shards of this volume (the new location is in the report).
    """

    def __init__(self, store: ErasureStore, loc: ECLocation) -> None:
        self.store = store
        self.loc = loc
        self.codec = store.codec(loc.data_shards, loc.parity_shards)
        self.layout = loc.layout
        self.token = uuid.uuid4().hex[:12]
        self.sources: dict[int, ShardFileReader] = {}
        self.bad_at: dict[int, set[int]] = {}  # source shard -> stripes known bad
        self.writers: dict[int, ShardFileWriter] = {}
        self.committed: list[Path] = []
        self.md5 = hashlib.md5()

    async def run(self) -> VerifyReport:
        before = await verify_volume(self.store, self.loc)
        if before.clean:
            return before
        if not before.readable:
            raise VolumeUnreadable(
                f"volume {self.loc.volume_id} cannot be repaired: stripes "
                f"{list(before.unreadable_stripes[:10])} have fewer than "
                f"{self.loc.data_shards} good blocks"
            )
        bad = before.bad_shards
        new_loc = self._relocate(bad)
        try:
            await self.store.run(self._open, before, new_loc)
            for s in range(self.layout.stripe_count):
                await self.store.run(self._rebuild_stripe, s)
            if self.md5.hexdigest() != self.loc.md5_hex:
                raise VolumeUnreadable(
                    f"volume {self.loc.volume_id}: rebuilt data has MD5 {self.md5.hexdigest()}, "
                    f"expected {self.loc.md5_hex}; shards left as they were"
                )
            footer = ShardFooter(self.loc.size, self.layout.stripe_count, self.md5.digest())
            await wait_all([self.store.submit(w.finish, footer) for w in self.writers.values()])
            by_disk: dict[str, list[int]] = {}
            for i in bad:
                by_disk.setdefault(new_loc.disks[i], []).append(i)
            await wait_all([self.store.submit(self._commit, d, ids) for d, ids in by_disk.items()])
        finally:
            await asyncio.shield(self.store.run(self._close))
        self.store.forget_degraded(self.loc.volume_id)
        rechecks = [self.store.submit(verify_shard, self.store, new_loc, i) for i in bad]
        after = await wait_all(rechecks)
        shards = list(before.shards)
        for report in after:
            shards[report.shard_index] = report
        return VerifyReport(new_loc, tuple(shards), unreadable_stripes(new_loc, shards), bad)

    def _relocate(self, bad: Sequence[int]) -> ECLocation:
        disks = list(self.loc.disks)
        ids = self.store.disk_ids
        pool = place_shards(self.loc.volume_id, ids, len(ids))
        for i in bad:
            if self.store.disk(disks[i]) is None:
                others = [d for j, d in enumerate(disks) if j != i]
                disks[i] = min(pool, key=lambda d: (others.count(d), pool.index(d)))
        return replace(self.loc, disks=tuple(disks))

    def _open(self, before: VerifyReport, new_loc: ECLocation) -> None:
        usable = (ShardState.OK, ShardState.BAD_BLOCKS)
        meta: Mapping[str, Any] = {}
        for report in before.shards:
            if report.state not in usable:
                continue
            path = self.store.shard_path(self.loc, report.shard_index)
            assert path is not None
            try:
                reader = ShardFileReader(path, expected_shard(self.loc, report.shard_index))
            except (OSError, ShardFormatError):
                continue  # damaged since verify; the stripes will find k others or fail
            self.sources[report.shard_index] = reader
            self.bad_at[report.shard_index] = set(report.bad_stripes)
            meta = reader.header.meta
        loc = self.loc
        for i in before.bad_shards:
            disk = self.store.disk(new_loc.disks[i])
            assert disk is not None
            header = ShardHeader(
                loc.volume_id, i, loc.data_shards, loc.parity_shards, loc.block_size, meta
            )
            self.writers[i] = ShardFileWriter(tmp_path(disk, header, self.token), header)

    def _rebuild_stripe(self, stripe: int) -> None:
        good: dict[int, Block] = {}
        for i, reader in sorted(self.sources.items()):  # data shards first: no arithmetic
            if len(good) == self.codec.k:
                break
            if stripe in self.bad_at[i]:
                continue
            try:
                good[i] = reader.read_block(stripe)
            except (OSError, ShardFormatError):
                self.bad_at[i].add(stripe)
        if len(good) < self.codec.k:
            raise VolumeUnreadable(
                f"volume {self.loc.volume_id} stripe {stripe}: fewer than {self.codec.k} "
                "good blocks left during repair"
            )
        data = self.codec.decode(good)
        left = self.layout.stripe_len(stripe)
        for block in data:
            view = memoryview(block)[:left]
            self.md5.update(view)
            left -= len(view)
        rebuilt: dict[int, Block] = {i: data[i] for i in self.writers if i < self.codec.k}
        rebuilt.update(self.codec.parity(data, (i for i in self.writers if i >= self.codec.k)))
        for i, writer in self.writers.items():
            writer.append_block(rebuilt[i])

    def _commit(self, disk_id: str, shard_ids: list[int]) -> None:
        disk = self.store.disk(disk_id)
        assert disk is not None
        files = [self.writers[i] for i in shard_ids]
        self.store.committer.commit(disk, self.loc.volume_id, shard_ids, files, self.committed)

    def _close(self) -> None:
        for reader in self.sources.values():
            reader.close()
        for writer in self.writers.values():
            writer.close()
            writer.path.unlink(missing_ok=True)  # gone already once renamed
