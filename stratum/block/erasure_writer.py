"""Writing an erasure-coded volume: stripes coded and appended to shard files as data comes.

Each full stripe is handed to the store's executor, where it is coded and appended to the
shard files while hashers read the same buffer beside it; the caller meanwhile fills the next.

Crash safety: shards are written under ``<disk>/tmp/``, fsynced, renamed into
``<disk>/ec/<id[-2:]>/``, and each touched directory fsynced before :meth:`ECWriter.finish`
returns; the caller then commits its metadata, so until then the volume is invisible and a crash
leaves only tmp files (removed by :meth:`ErasureStore.sweep_tmp`) -- or, if it strikes between
the renames and the metadata commit, committed shard files no metadata names (removed by
:meth:`ErasureStore.sweep_orphans`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from stratum.block.disk import Disk
from stratum.block.erasure_location import ECLocation, place_shards
from stratum.block.errors import StorageError
from stratum.block.jobs import wait_all
from stratum.block.shardfile import (
    ShardFileWriter,
    ShardFooter,
    ShardHeader,
    as_write_error,
    encode_meta,
    is_volume_id,
    shard_relpath,
)
from stratum.util.fsio import fsync_dir

if TYPE_CHECKING:
    from stratum.block.erasure import ErasureStore


class Hasher(Protocol):
    """Anything with ``update(buffer)``, e.g. ``hashlib.sha256()``.

    The writer feeds memoryviews of its stripe buffer (no copy), from a worker thread.
    """

    def update(self, data: bytes | memoryview, /) -> None: ...


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
        usable = [d for d in store.disk_ids if d not in store.offline] or list(store.disk_ids)
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
            await wait_all([self._store.submit(f.finish, footer) for f in self._files])
            by_disk: dict[str, list[int]] = {}
            for i, disk_id in enumerate(self._placement):
                by_disk.setdefault(disk_id, []).append(i)
            await wait_all([self._store.submit(self._commit, ids) for ids in by_disk.values()])
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
        await wait_all(jobs)  # raises the first failure, after every job has ended
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
            await wait_all(jobs)
        except Exception:
            pass  # already reported by whoever saw it first
        finally:  # even when cancelled: no job runs any more, the files can go
            self._buf = self._spare = self._inflight_buf = None
            await asyncio.shield(self._store.run(self._remove_files))

    # -- executor side ------------------------------------------------------------------

    def _open_files(self) -> None:
        p = self._params
        for i, disk_id in enumerate(self._placement):
            disk = self._disk(disk_id)
            header = ShardHeader(
                self.volume_id, i, p.data_shards, p.parity_shards, p.block_size, self._meta
            )
            self._files.append(ShardFileWriter(tmp_path(disk, header, self._token), header))

    def _encode_and_write(self, stripe: memoryview) -> None:
        if not self._files:
            self._open_files()
        blocks = self._codec.encode(stripe)
        for f, block in zip(self._files, blocks, strict=True):
            f.append_block(block)

    def _commit(self, shard_ids: list[int]) -> None:
        disk = self._disk(self._placement[shard_ids[0]])
        files = [self._files[i] for i in shard_ids]
        self._store.committer.commit(disk, self.volume_id, shard_ids, files, self._committed)

    def _disk(self, disk_id: str) -> Disk:
        disk = self._store.disk(disk_id)
        assert disk is not None  # placed on the store's own disks, which never change
        return disk

    def _remove_files(self) -> None:
        for f in self._files:
            f.close()
            f.path.unlink(missing_ok=True)
        for path in self._committed:
            path.unlink(missing_ok=True)
        self._files, self._committed = [], []


def tmp_path(disk: Disk, header: ShardHeader, token: str) -> Path:
    return disk.tmp_dir / f"{header.volume_id}.{header.shard_index}.{token}.tmp"


class ShardCommitter:
    """Moves finished shard files into ``ec/`` durably; one per store, shared by its writers
    and repairs (from executor threads).

    It remembers the fan-out directories ``ec/<xx>/`` whose own entry is known durable, so
    ``ec/`` itself is fsynced only the first time this process uses a fan-out directory:
    checking whether we created it would not do, as another writer may have created it and not
    yet made it durable.
    """

    def __init__(self) -> None:
        self._durable_dirs: set[Path] = set()

    def commit(
        self,
        disk: Disk,
        volume_id: str,
        shard_ids: Sequence[int],
        files: Sequence[ShardFileWriter],
        committed: list[Path],
    ) -> None:
        """Close, rename into ``ec/`` and fsync the directories of shards on one disk (blocking).

        Each directory is fsynced once however many shards it received; ``committed`` gets each
        final path as soon as it exists, so a failure can remove them.
        """
        durable_dirs = self._durable_dirs
        dirs: list[Path] = []
        for i, f in zip(shard_ids, files, strict=True):
            f.close()
            final = disk.ec_dir / shard_relpath(volume_id, i)
            try:
                if final.parent not in durable_dirs:
                    final.parent.mkdir(exist_ok=True)
                    if disk.ec_dir not in dirs:
                        dirs.append(disk.ec_dir)
                try:
                    os.replace(f.path, final)
                except FileNotFoundError:
                    # The fan-out directory vanished since we made it durable (a replaced,
                    # empty disk at the same path): make it again.
                    durable_dirs.discard(final.parent)
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
        durable_dirs.update(d for d in dirs if d != disk.ec_dir)
