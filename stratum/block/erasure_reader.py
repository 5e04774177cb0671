"""Reading an erasure-coded volume: stripes from ``k`` blocks, decoding only when needed.

With all the data shards a stripe needs healthy, a read does no decoding. Shards are opened
lazily (once each, in the executor) and stay open for the whole read; blocks of one stripe are
read in parallel, and stripe ``n + 1`` is read while stripe ``n`` is consumed. A shard found
missing or damaged is reported to the store (:meth:`ErasureStore.note_degraded`) and the
stripe is decoded from others.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from stratum.block.codec import Block
from stratum.block.erasure_location import DegradedShard, ECLocation, expected_shard
from stratum.block.errors import ShardFormatError, VolumeUnreadable
from stratum.block.jobs import wait_all
from stratum.block.shardfile import ShardFileReader

if TYPE_CHECKING:
    from stratum.block.erasure import ErasureStore


class VolumeReader:
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
        # At most one stripe is copied on the loop: a memory copy of that size costs less than
        # a round trip through the executor would.
        return bytes(pieces[0]) if len(pieces) == 1 else b"".join(pieces)

    async def _read_blocks(self, shards: list[int], stripe: int) -> list[Block | None]:
        readers = await wait_all([self._open(i) for i in shards])
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
            for n, block in zip(missing, await wait_all(jobs), strict=True):
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
            reader = ShardFileReader(path, expected_shard(self.loc, index))
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
