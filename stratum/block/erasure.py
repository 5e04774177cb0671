"""Erasure-coded volumes: one object's data spread as ``k + m`` shard files over a pool's disks.

A volume (``volume_id``: 32 lowercase hex) is cut into stripes of ``k * block_size`` bytes;
each stripe is coded (:mod:`stratum.block.codec`) into ``k`` data + ``m`` parity blocks, and
block ``i`` of every stripe is appended to shard file ``i`` (:mod:`stratum.block.shardfile`).
Any ``k`` shards give the data back; with all data shards healthy a read does no decoding.

Placement: the disks are sorted by id and shard ``i`` goes to disk ``(start + i) mod n``,
``start`` taken from a hash of the volume id (not its leading digits: Stratum's ids begin with
a timestamp, which would send a minute's worth of volumes to the same disks). With
``n >= k + m`` disks that is ``k + m`` distinct disks, and different volumes start at
different disks (load spreads); with fewer disks the same rotation is a round robin, so each
disk holds ``floor`` or ``ceil`` of ``(k + m) / n`` shards.
The placement is recorded as disk *ids* in :class:`ECLocation` (what metadata stores).

Crash safety of a write: shards are written under ``<disk>/tmp/``, fsynced, renamed into
``<disk>/ec/<id[-2:]>/``, and each touched directory fsynced before :meth:`ECWriter.finish`
returns; the caller then commits its metadata, so until then the volume is invisible and a crash
leaves only tmp files (removed by :meth:`ErasureStore.sweep_tmp`) -- or, if it strikes between
the renames and the metadata commit, committed shard files no metadata names (for a future
garbage scrub).

Threads: all file I/O, coding, CRC and hashing runs in the executor given to the store, which
must be a thread pool (jobs share open files and buffers). Work is split per disk where it can
run in parallel (fsync, block reads, verify), and hashing runs beside encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import threading
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from stratum.block.codec import MAX_SHARDS, Block, Codec
from stratum.block.disk import Disk
from stratum.block.errors import ShardFormatError, StorageError, VolumeUnreadable
from stratum.block.shardfile import (
    Expected,
    Layout,
    ShardFileReader,
    ShardFileWriter,
    ShardFooter,
    ShardHeader,
    as_write_error,
    encode_meta,
    is_volume_id,
    shard_relpath,
)
from stratum.util.fsio import fsync_dir

log = logging.getLogger(__name__)

LOCATION_VERSION = 1
_T = TypeVar("_T")


class Hasher(Protocol):
    """Anything with ``update(buffer)``, e.g. ``hashlib.sha256()``.

    The writer feeds memoryviews of its stripe buffer (no copy), from a worker thread.
    """

    def update(self, data: bytes | memoryview, /) -> None: ...


@dataclass(frozen=True)
class ECParams:
    """Coding parameters for new volumes (existing ones keep those in their location)."""

    data_shards: int = 4
    parity_shards: int = 2
    block_size: int = 256 * 1024

    def __post_init__(self) -> None:
        _check_params(self.data_shards, self.parity_shards, self.block_size)

    @property
    def stripe_size(self) -> int:
        return self.data_shards * self.block_size


def _check_params(k: int, m: int, block_size: int) -> None:
    if k < 1 or m < 0 or k + m > MAX_SHARDS:
        raise ValueError(f"need k >= 1, m >= 0, k + m <= {MAX_SHARDS}; got k={k} m={m}")
    if not 1 <= block_size < 1 << 32:
        raise ValueError(f"block_size must be in 1 .. 2**32-1, got {block_size}")


@dataclass(frozen=True)
class ECLocation:
    """Where and how a volume is stored: the record metadata keeps for an object."""

    volume_id: str
    data_shards: int
    parity_shards: int
    block_size: int
    size: int
    disks: tuple[str, ...]  # disk id holding shard i
    md5_hex: str

    def __post_init__(self) -> None:
        _check_params(self.data_shards, self.parity_shards, self.block_size)
        if not is_volume_id(self.volume_id):
            raise ValueError(f"volume id must be 32 lowercase hex characters: {self.volume_id!r}")
        if len(self.disks) != self.data_shards + self.parity_shards:
            raise ValueError(f"{len(self.disks)} disks for {self.shard_count} shards")
        if self.size < 0:
            raise ValueError("negative size")
        if len(self.md5_hex) != 32 or self.md5_hex.strip("0123456789abcdef"):
            raise ValueError(f"md5_hex must be 32 lowercase hex characters: {self.md5_hex!r}")

    @property
    def shard_count(self) -> int:
        return self.data_shards + self.parity_shards

    @property
    def layout(self) -> Layout:
        return Layout(self.data_shards, self.block_size, self.size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": LOCATION_VERSION,
            "volume_id": self.volume_id,
            "data_shards": self.data_shards,
            "parity_shards": self.parity_shards,
            "block_size": self.block_size,
            "size": self.size,
            "disks": list(self.disks),
            "md5": self.md5_hex,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ECLocation:
        version = record.get("version")
        if version != LOCATION_VERSION:
            raise ValueError(f"unknown ECLocation record version {version!r}")
        return cls(
            volume_id=str(record["volume_id"]),
            data_shards=int(record["data_shards"]),
            parity_shards=int(record["parity_shards"]),
            block_size=int(record["block_size"]),
            size=int(record["size"]),
            disks=tuple(str(d) for d in record["disks"]),
            md5_hex=str(record["md5"]),
        )


@dataclass(frozen=True)
class DegradedShard:
    """A shard found missing or damaged by a read (for the repair queue)."""

    volume_id: str
    shard_index: int
    disk_id: str
    reason: str


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


def new_volume_id() -> str:
    return uuid.uuid4().hex


def place_shards(volume_id: str, disk_ids: Iterable[str], shard_count: int) -> tuple[str, ...]:
    """Disk id for each shard: rotate over the sorted ids from a start the volume id picks."""
    ids = sorted(disk_ids)
    if not ids:
        raise ValueError("no disks")
    digest = hashlib.blake2b(volume_id.encode(), digest_size=8).digest()
    start = int.from_bytes(digest, "big") % len(ids)
    return tuple(ids[(start + i) % len(ids)] for i in range(shard_count))


async def _all(futures: Sequence[asyncio.Future[_T]]) -> list[_T]:
    """Wait for *every* future, then return results or raise the first error.

    Unlike ``gather``, never returns while a job still runs in a thread (jobs share open
    files that the caller may close next), even if one failed or the waiter is cancelled.
    """
    if futures:
        try:
            await asyncio.wait(futures)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.wait(futures))
            raise
    for fut in futures:
        exc = fut.exception()
        if exc is not None:
            raise exc
    return [fut.result() for fut in futures]


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
        # ec/<xx>/ directories whose own entry is known durable (see _commit_shards)
        self._durable_dirs: set[Path] = set()
        self._disks_ec_dirs = {d.ec_dir for d in disks}

    @property
    def disks(self) -> tuple[Disk, ...]:
        return tuple(self._disks.values())

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
        return _VolumeReader(self, loc).read(start, end)

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
        await _all([self.submit(unlink, paths) for paths in by_disk.values()])
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
        return await _verify(self, loc)

    async def repair(self, loc: ECLocation) -> VerifyReport:
        """Rewrite every shard :meth:`verify` finds bad from the good ones; report afterwards.

        Raises :class:`VolumeUnreadable` if some stripe has fewer than ``k`` good blocks.
        """
        return await _Repair(self, loc).run()


class ECWriter:
    """Streams one volume to disk; see :meth:`ErasureStore.writer`.

    Memory: the stripe being filled plus the one in flight (and its parity), whatever the
    object size. Usable as ``async with``: leaving the block without :meth:`finish` aborts.
    """

    def __init__(
        self,
        store: ErasureStore,
        volume_id: str,
        meta: Mapping[str, Any],
        hashers: Sequence[Hasher],
    ) -> None:
        if not is_volume_id(volume_id):
            raise ValueError(f"volume id must be 32 lowercase hex characters: {volume_id!r}")
        encode_meta(meta)  # fail now, not in a thread, on meta that is not JSON-able
        self._store = store
        self._params = params = store.params
        self._codec = store.codec(params.data_shards, params.parity_shards)
        self.volume_id = volume_id
        self._meta = dict(meta)
        self._md5 = hashlib.md5()
        self._hashers: list[Hasher] = [self._md5, *hashers]
        # Disks marked offline get no new shards; the others take them all.
        usable = [d for d in store._disks if d not in store.offline] or list(store._disks)
        self._placement = place_shards(volume_id, usable, self._codec.total)
        self._token = uuid.uuid4().hex[:12]
        self._stripe_size = params.stripe_size
        self._buf: bytearray | None = None  # being filled
        self._fill = 0
        self._spare: bytearray | None = None  # free for the next stripe
        self._inflight: list[asyncio.Future[None]] = []
        self._inflight_buf: bytearray | None = None
        self._files: list[ShardFileWriter] = []
        self._committed: list[Path] = []
        self._size = 0
        self._stripes = 0
        self._state = "open"  # -> finishing -> done | failed | aborted

    async def __aenter__(self) -> ECWriter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._state != "done":
            await self.abort()

    # -- caller side (event loop) -------------------------------------------------------

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append data; returns once it is buffered (stripes are coded in the background)."""
        self._require("open")
        view = memoryview(data).cast("B")
        try:
            while view:
                if self._buf is None:
                    self._buf = self._spare or bytearray(self._stripe_size)
                    self._spare = None
                n = min(len(view), self._stripe_size - self._fill)
                self._buf[self._fill : self._fill + n] = view[:n]
                self._fill += n
                view = view[n:]
                if self._fill == self._stripe_size:
                    await self._submit()
        except BaseException:
            await self._fail()
            raise

    async def finish(self) -> ECLocation:
        """Flush, fsync, rename into place and fsync directories; return the location."""
        self._require("open")
        self._state = "finishing"
        try:
            if self._fill:
                await self._submit()
            await self._drain()
            if not self._files:
                await self._store.run(self._open_files)  # empty volume
            footer = ShardFooter(self._size, self._stripes, self._md5.digest())
            await _all([self._store.submit(f.finish, footer) for f in self._files])
            by_disk: dict[str, list[int]] = {}
            for i, disk_id in enumerate(self._placement):
                by_disk.setdefault(disk_id, []).append(i)
            await _all([self._store.submit(self._commit, ids) for ids in by_disk.values()])
        except BaseException:
            await self._fail()
            raise
        self._state = "done"
        return ECLocation(
            volume_id=self.volume_id,
            data_shards=self._params.data_shards,
            parity_shards=self._params.parity_shards,
            block_size=self._params.block_size,
            size=self._size,
            disks=self._placement,
            md5_hex=self._md5.hexdigest(),
        )

    async def abort(self) -> None:
        """Drop everything written so far. Idempotent; a no-op after a successful finish()
        (use :meth:`ErasureStore.delete` to remove a finished volume)."""
        if self._state in ("done", "failed", "aborted"):
            return
        self._state = "aborted"
        await self._cleanup()

    def _require(self, state: str) -> None:
        if self._state != state:
            raise StorageError(f"writer of volume {self.volume_id} is {self._state}")

    async def _submit(self) -> None:
        """Hand the filled buffer to the executor once the previous stripe is done."""
        await self._drain()
        buf, n = self._buf, self._fill
        assert buf is not None
        self._buf, self._fill = None, 0
        self._inflight_buf = buf
        view = memoryview(buf)[:n]
        self._size += n
        self._stripes += 1
        # Hashers run beside the encoder; both only read the buffer.
        jobs = [self._store.submit(h.update, view) for h in self._hashers]
        jobs.append(self._store.submit(self._encode_and_write, view))
        self._inflight = jobs

    async def _drain(self) -> None:
        jobs = self._inflight
        await _all(jobs)  # raises the first failure, after every job has ended
        self._inflight = []
        if self._inflight_buf is not None:
            self._spare, self._inflight_buf = self._inflight_buf, None

    async def _fail(self) -> None:
        if self._state in ("failed", "aborted"):
            return
        self._state = "failed"
        await self._cleanup()

    async def _cleanup(self) -> None:
        jobs, self._inflight = self._inflight, []
        try:
            await _all(jobs)
        except Exception:
            pass  # already reported by whoever saw it first
        finally:  # even when cancelled: no job runs any more, the files can go
            self._buf = self._spare = self._inflight_buf = None
            await asyncio.shield(self._store.run(self._remove_files))

    # -- executor side ------------------------------------------------------------------

    def _open_files(self) -> None:
        p = self._params
        for i, disk_id in enumerate(self._placement):
            disk = self._store._disks[disk_id]
            header = ShardHeader(
                self.volume_id, i, p.data_shards, p.parity_shards, p.block_size, self._meta
            )
            self._files.append(ShardFileWriter(_tmp_path(disk, header, self._token), header))

    def _encode_and_write(self, stripe: memoryview) -> None:
        if not self._files:
            self._open_files()
        blocks = self._codec.encode(stripe)
        for f, block in zip(self._files, blocks, strict=True):
            f.append_block(block)

    def _commit(self, shard_ids: list[int]) -> None:
        disk = self._store._disks[self._placement[shard_ids[0]]]
        files = [self._files[i] for i in shard_ids]
        _commit_shards(self._store, disk, self.volume_id, shard_ids, files, self._committed)

    def _remove_files(self) -> None:
        for f in self._files:
            f.close()
            f.path.unlink(missing_ok=True)
        for path in self._committed:
            path.unlink(missing_ok=True)
        self._files, self._committed = [], []


def _tmp_path(disk: Disk, header: ShardHeader, token: str) -> Path:
    return disk.tmp_dir / f"{header.volume_id}.{header.shard_index}.{token}.tmp"


def _commit_shards(
    store: ErasureStore,
    disk: Disk,
    volume_id: str,
    shard_ids: Sequence[int],
    files: Sequence[ShardFileWriter],
    committed: list[Path],
) -> None:
    """Close, rename into ``ec/`` and fsync the directories of shards on one disk.

    Each directory is fsynced once however many shards it received; ``committed`` gets each
    final path as soon as it exists, so a failure can remove them. ``ec/`` itself is fsynced
    the first time this process uses a fan-out directory: checking whether we created it
    would not do, as another writer may have created it and not yet made it durable.
    """
    dirs: list[Path] = []
    for i, f in zip(shard_ids, files, strict=True):
        f.close()
        final = disk.ec_dir / shard_relpath(volume_id, i)
        try:
            if final.parent not in store._durable_dirs:
                final.parent.mkdir(exist_ok=True)
                if disk.ec_dir not in dirs:
                    dirs.append(disk.ec_dir)
            try:
                os.replace(f.path, final)
            except FileNotFoundError:
                # The fan-out directory vanished since we made it durable (a replaced,
                # empty disk at the same path): make it again.
                store._durable_dirs.discard(final.parent)
                final.parent.mkdir(parents=True, exist_ok=True)
                if disk.ec_dir not in dirs:
                    dirs.append(disk.ec_dir)
                os.replace(f.path, final)
        except OSError as exc:
            raise as_write_error(final, exc) from exc
        committed.append(final)
        if final.parent not in dirs:
            dirs.insert(0, final.parent)
    for d in dirs:
        try:
            fsync_dir(d)
        except OSError as exc:
            raise as_write_error(d, exc) from exc
    store._durable_dirs.update(d for d in dirs if d not in store._disks_ec_dirs)


# -- reading -------------------------------------------------------------------------------


class _VolumeReader:
    """One read of a volume: opens shards lazily (once each), reads blocks in parallel.

    Shard files stay open for the whole read and are closed once no job uses them.
    """

    def __init__(self, store: ErasureStore, loc: ECLocation) -> None:
        self.store = store
        self.loc = loc
        self.layout = loc.layout
        self.codec = store.codec(loc.data_shards, loc.parity_shards)
        self._opening: dict[int, asyncio.Future[ShardFileReader | None]] = {}
        self._readers: list[ShardFileReader] = []
        self._lock = threading.Lock()  # _readers/_closed/_bad, touched from worker threads
        self._closed = False
        self._bad: dict[int, str] = {}  # shard -> why it is unusable for every stripe
        self._loop: asyncio.AbstractEventLoop | None = None

    async def read(self, start: int, end: int) -> AsyncGenerator[bytes, None]:
        if start == end:
            return
        self._loop = loop = asyncio.get_running_loop()
        size = self.layout.stripe_size
        spans = [
            (s, max(start, s * size) - s * size, min(end, (s + 1) * size) - s * size)
            for s in range(start // size, (end - 1) // size + 1)
        ]
        pending: list[asyncio.Task[bytes]] = []
        try:
            for n in range(len(spans)):
                if not pending:
                    pending.append(loop.create_task(self._read_stripe(*spans[n])))
                if n + 1 < len(spans):  # prefetch: read stripe n+1 while n is consumed
                    pending.append(loop.create_task(self._read_stripe(*spans[n + 1])))
                data = await pending[0]
                pending.pop(0)
                yield data
        finally:
            self._close_when_done(pending)

    def _close_when_done(self, tasks: list[asyncio.Task[bytes]]) -> None:
        """Close the shard files once no task uses them, without awaiting (safe in GC)."""
        left = len(tasks)

        def one_done(task: asyncio.Task[bytes]) -> None:
            nonlocal left
            if not task.cancelled():
                task.exception()  # an abandoned prefetch's failure is not news
            left -= 1
            if left == 0:
                self._close()

        if not tasks:
            self._close()
        for task in tasks:
            task.add_done_callback(one_done)

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            readers, self._readers = self._readers, []
        for reader in readers:
            reader.close()

    async def _read_stripe(self, stripe: int, a: int, b: int) -> bytes:
        """Object bytes ``[a, b)`` of ``stripe`` (offsets within the stripe)."""
        k = self.codec.k
        blen = self.layout.block_len(stripe)
        need = list(range(a // blen, (b - 1) // blen + 1))
        # Shards that failed to open are skipped from the start, so a volume with a lost
        # shard costs one round of reads per stripe, not two. Data shards come first.
        with self._lock:
            known_bad = set(self._bad)
        order = [i for i in need if i not in known_bad]
        order += [i for i in range(self.codec.total) if i not in need and i not in known_bad]
        batch = order[: len(need)] if not known_bad.intersection(need) else order[:k]
        good: dict[int, Block] = {}
        tried = 0
        while True:
            tried += len(batch)
            got = await self._read_blocks(batch, stripe)
            good.update((i, blk) for i, blk in zip(batch, got, strict=True) if blk is not None)
            if all(i in good for i in need) or len(good) >= k:
                break
            batch = order[tried : tried + k - len(good)]
            if not batch:
                raise VolumeUnreadable(
                    f"volume {self.loc.volume_id} stripe {stripe}: only {len(good)} of the "
                    f"{k} blocks needed are readable ({self._why()})"
                )
        if not all(i in good for i in need):  # degraded: decode from k good blocks
            data = await self.store.run(self.codec.decode, good)
            good = dict(enumerate(data))
        pieces = [memoryview(good[i])[max(a - i * blen, 0) : b - i * blen] for i in need]
        # At most one stripe (1 MiB by default) is copied on the loop: ~0.1 ms, less than a
        # round trip through the executor would cost.
        return bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)

    async def _read_blocks(self, shards: list[int], stripe: int) -> list[Block | None]:
        readers = await _all([self._open(i) for i in shards])
        # Blocks in the page cache are read here, on the loop (see read_block_cached); the
        # rest, in parallel in the executor, which also reports damage and missing files.
        got: list[Block | None] = [
            None if r is None else r.read_block_cached(stripe) for r in readers
        ]
        missing = [n for n, block in enumerate(got) if block is None]
        if missing:
            jobs = [
                self.store.submit(self._read_block, shards[n], readers[n], stripe) for n in missing
            ]
            for n, block in zip(missing, await _all(jobs), strict=True):
                got[n] = block
        return got

    def _read_block(self, index: int, reader: ShardFileReader | None, stripe: int) -> Block | None:
        if reader is None:
            return None
        try:
            return reader.read_block(stripe)
        except (OSError, ShardFormatError) as exc:
            self._degraded(index, str(exc))
            return None

    def _open(self, index: int) -> asyncio.Future[ShardFileReader | None]:
        if index not in self._opening:
            self._opening[index] = self.store.submit(self._open_shard, index)
        return self._opening[index]

    def _open_shard(self, index: int) -> ShardFileReader | None:
        path = self.store.shard_path(self.loc, index)
        try:
            if path is None:
                raise FileNotFoundError(f"disk {self.loc.disks[index]} is not in the pool")
            reader = ShardFileReader(path, _expected(self.loc, index))
        except (OSError, ShardFormatError) as exc:
            with self._lock:
                self._bad[index] = str(exc)
            self._degraded(index, str(exc))
            return None
        with self._lock:
            if not self._closed:
                self._readers.append(reader)
                return reader
        reader.close()
        return None

    def _degraded(self, index: int, reason: str) -> None:
        # Runs in a worker thread; the store's bookkeeping and callback run on the loop.
        record = DegradedShard(self.loc.volume_id, index, self.loc.disks[index], reason)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.store.note_degraded, record)

    def _why(self) -> str:
        with self._lock:
            bad = sorted(self._bad.items())
        return "; ".join(f"shard {i}: {r}" for i, r in bad) or "bad blocks"


def _expected(loc: ECLocation, index: int) -> Expected:
    return Expected(
        volume_id=loc.volume_id,
        shard_index=index,
        data_shards=loc.data_shards,
        parity_shards=loc.parity_shards,
        block_size=loc.block_size,
        size=loc.size,
        md5=bytes.fromhex(loc.md5_hex),
    )


# -- verify and repair ----------------------------------------------------------------------


def _verify_shard(store: ErasureStore, loc: ECLocation, index: int) -> ShardReport:
    """Read every block of one shard (blocking; one job per shard, so disks work in parallel)."""
    disk_id = loc.disks[index]
    path = store.shard_path(loc, index)
    if path is None:
        return ShardReport(index, disk_id, ShardState.DISK_MISSING, detail="disk not in pool")
    try:
        reader = ShardFileReader(path, _expected(loc, index))
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


async def _verify(store: ErasureStore, loc: ECLocation) -> VerifyReport:
    jobs = [store.submit(_verify_shard, store, loc, i) for i in range(loc.shard_count)]
    shards = tuple(await _all(jobs))
    return VerifyReport(loc, shards, unreadable_stripes(loc, shards))


class _Repair:
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
        before = await _verify(self.store, self.loc)
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
            await _all([self.store.submit(w.finish, footer) for w in self.writers.values()])
            by_disk: dict[str, list[int]] = {}
            for i in bad:
                by_disk.setdefault(new_loc.disks[i], []).append(i)
            await _all([self.store.submit(self._commit, d, ids) for d, ids in by_disk.items()])
        finally:
            await asyncio.shield(self.store.run(self._close))
        self.store.forget_degraded(self.loc.volume_id)
        after = await _all([self.store.submit(_verify_shard, self.store, new_loc, i) for i in bad])
        shards = list(before.shards)
        for report in after:
            shards[report.shard_index] = report
        return VerifyReport(new_loc, tuple(shards), unreadable_stripes(new_loc, shards), bad)

    def _relocate(self, bad: Sequence[int]) -> ECLocation:
        disks = list(self.loc.disks)
        pool = place_shards(self.loc.volume_id, self.store._disks, len(self.store._disks))
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
                reader = ShardFileReader(path, _expected(self.loc, report.shard_index))
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
            self.writers[i] = ShardFileWriter(_tmp_path(disk, header, self.token), header)

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
        _commit_shards(self.store, disk, self.loc.volume_id, shard_ids, files, self.committed)

    def _close(self) -> None:
        for reader in self.sources.values():
            reader.close()
        for writer in self.writers.values():
            writer.close()
            writer.path.unlink(missing_ok=True)  # gone already once renamed
