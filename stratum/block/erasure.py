"""Erasure-coded volumes: one object's data spread as ``k + m`` shard files over a pool's disks.

A volume (``volume_id``: 32 lowercase hex) is cut into stripes of ``k * block_size`` bytes;
each stripe is coded (:mod:`stratum.block.codec`) into ``k`` data + ``m`` parity blocks, and
block ``i`` of every stripe is appended to shard file ``i`` (:mod:`stratum.block.shardfile`).
Any ``k`` shards give the data back.

:class:`ErasureStore` is the entry point; the work is done beside it: parameters, location
records and placement in :mod:`~stratum.block.erasure_location`, writing (and crash safety) in
:mod:`~stratum.block.erasure_writer`, reading in :mod:`~stratum.block.erasure_reader`, verify
and repair in :mod:`~stratum.block.erasure_repair`.

Threads: all file I/O, coding, CRC and hashing runs in the executor given to the store, which
must be a thread pool (jobs share open files and buffers). Work is split per disk where it can
run in parallel (fsync, block reads, verify), and hashing runs beside encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, TypeVar

from stratum.block.codec import Codec
from stratum.block.disk import Disk
from stratum.block.erasure_location import (
    DegradedShard,
    ECLocation,
    ECParams,
    new_volume_id,
    place_shards,
)
from stratum.block.erasure_reader import VolumeReader
from stratum.block.erasure_repair import (
    Repair,
    ShardReport,
    ShardState,
    VerifyReport,
    unreadable_stripes,
    verify_volume,
)
from stratum.block.erasure_writer import ECWriter, Hasher, ShardCommitter
from stratum.block.jobs import wait_all
from stratum.block.shardfile import shard_relpath

__all__ = [
    "DegradedShard",
    "ECLocation",
    "ECParams",
    "ECWriter",
    "ErasureStore",
    "Hasher",
    "ShardReport",
    "ShardState",
    "VerifyReport",
    "new_volume_id",
    "place_shards",
    "unreadable_stripes",
]

log = logging.getLogger("stratum.block.erasure")

_T = TypeVar("_T")


class ErasureStore:
    """Writes, reads, verifies and repairs erasure-coded volumes on a set of disks."""

    def __init__(
        self,
        disks: Sequence[Disk],
        params: ECParams,
        executor: Executor,
        on_degraded: Callable[[DegradedShard], None] | None = None,
    ) -> None:
        if not disks:
            raise ValueError("an ErasureStore needs at least one disk")
        self._disks = {d.disk_id: d for d in disks}
        self.offline: set[str] = set()  # disk ids to leave out of new placements
        if len(self._disks) != len(disks):
            raise ValueError("two disks share a disk id")
        self.params = params
        self.executor = executor
        self._on_degraded = on_degraded
        self._degraded: dict[tuple[str, int], DegradedShard] = {}
        self._codecs: dict[tuple[int, int], Codec] = {}
        self.committer = ShardCommitter()  # used by writers and repairs

    @property
    def disks(self) -> tuple[Disk, ...]:
        return tuple(self._disks.values())

    @property
    def disk_ids(self) -> tuple[str, ...]:
        return tuple(self._disks)

    def disk(self, disk_id: str) -> Disk | None:
        return self._disks.get(disk_id)

    def codec(self, data_shards: int, parity_shards: int) -> Codec:
        key = (data_shards, parity_shards)
        if key not in self._codecs:
            self._codecs[key] = Codec(data_shards, parity_shards)
        return self._codecs[key]

    def shard_path(self, loc: ECLocation, index: int) -> Path | None:
        """Committed path of shard ``index``; None if its disk is not in the pool."""
        disk = self._disks.get(loc.disks[index])
        return None if disk is None else disk.ec_dir / shard_relpath(loc.volume_id, index)

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def submit(self, fn: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        return asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # -- degraded shards ----------------------------------------------------------------

    def note_degraded(self, record: DegradedShard) -> None:
        key = (record.volume_id, record.shard_index)
        if key in self._degraded:
            return
        self._degraded[key] = record
        log.warning(
            "volume %s shard %d on disk %s is degraded: %s",
            record.volume_id,
            record.shard_index,
            record.disk_id,
            record.reason,
        )
        if self._on_degraded is not None:
            self._on_degraded(record)

    def degraded_shards(self) -> list[DegradedShard]:
        """Shards reads found damaged since start (or since their volume was repaired)."""
        return list(self._degraded.values())

    def forget_degraded(self, volume_id: str) -> None:
        for key in [k for k in self._degraded if k[0] == volume_id]:
            del self._degraded[key]

    # -- the API ------------------------------------------------------------------------

    def writer(
        self, volume_id: str, meta: Mapping[str, Any], hashers: Sequence[Hasher] = ()
    ) -> ECWriter:
        """A writer for a new volume; ``meta`` (JSON-able) goes into every shard header.

        ``hashers`` are fed the raw data in the executor. The MD5 of the data is computed
        anyway and returned as ``ECLocation.md5_hex``: do not pass an MD5 hasher too.
        """
        return ECWriter(self, volume_id, meta, hashers)

    def read(
        self, loc: ECLocation, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The bytes ``[start, end)`` of a volume, in chunks of at most one stripe.

        Range errors raise ``ValueError`` here; damage raises :class:`VolumeUnreadable` from
        the iteration. A consumer that stops early should ``aclose()`` it (``async for``
        with ``break`` leaves that to the garbage collector) to close the shard files now.
        """
        end = loc.size if end is None else end
        if not 0 <= start <= end <= loc.size:
            raise ValueError(f"range {start}..{end} outside volume of {loc.size} bytes")
        return VolumeReader(self, loc).read(start, end)

    async def delete(self, loc: ECLocation) -> None:
        """Remove a volume's shard files (missing files and disks are fine)."""

        def unlink(paths: list[Path]) -> None:
            for path in paths:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass

        by_disk: dict[str, list[Path]] = {}
        for i, disk_id in enumerate(loc.disks):
            path = self.shard_path(loc, i)
            if path is not None:
                by_disk.setdefault(disk_id, []).append(path)
        await wait_all([self.submit(unlink, paths) for paths in by_disk.values()])
        self.forget_degraded(loc.volume_id)

    def sweep_orphans(self, is_live: Callable[[str], bool], before: str) -> int:
        """Remove shard files of volumes no metadata knows; return how many files went.

        A crash between a writer's rename and the metadata commit leaves such files.
        Only volume ids sorting below ``before`` are considered, so volumes being
        written right now (ids are time-ordered) are never touched. Blocking: run it in
        an executor.
        """
        removed = 0
        for disk in self._disks.values():
            if not disk.ec_dir.is_dir():
                continue
            for fan in disk.ec_dir.iterdir():
                if not fan.is_dir():
                    continue
                for entry in fan.iterdir():
                    volume_id = entry.name.split(".", 1)[0]
                    if volume_id >= before or is_live(volume_id):
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()
                        removed += 1
        return removed

    def sweep_tmp(self) -> int:
        """Remove everything in each disk's ``tmp/``; returns how many entries went.

        Blocking, like :func:`~stratum.block.disk.open_disk`: call it at start-up before any
        writer exists (anything in ``tmp/`` then is an orphan of a crash), or in an executor.
        """
        count = 0
        for disk in self._disks.values():
            if not disk.tmp_dir.is_dir():
                continue
            for entry in disk.tmp_dir.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                count += 1
        return count

    async def verify(self, loc: ECLocation) -> VerifyReport:
        """Check the header, footer and every block of every shard (one job per shard)."""
        return await verify_volume(self, loc)

    async def repair(self, loc: ECLocation) -> VerifyReport:
        """Rewrite every shard :meth:`verify` finds bad from the good ones; report afterwards.

        Raises :class:`VolumeUnreadable` if some stripe has fewer than ``k`` good blocks.
        """
        return await Repair(self, loc).run()
