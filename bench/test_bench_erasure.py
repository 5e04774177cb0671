"""Micro-benchmarks of erasure coding: 4+2 on 1 MiB stripes (256 KiB blocks).

Run: ``.venv/bin/python -m pytest bench/test_bench_erasure.py`` (``-m pytest`` puts the project
on ``sys.path``). Each result's ``extra_info["MB/s"]`` is stripe bytes per second of the mean.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from stratum.block.codec import Codec
from stratum.block.disk import open_disk
from stratum.block.erasure import ECLocation, ECParams, ErasureStore, new_volume_id

STRIPE = 1 << 20


def _record(benchmark: Any, nbytes: int) -> None:
    benchmark.extra_info["MB/s"] = round(nbytes / benchmark.stats.stats.mean / 1e6, 1)


@pytest.fixture(scope="module")
def stripe() -> bytes:
    return os.urandom(STRIPE)


def test_encode_4_2(benchmark: Any, stripe: bytes) -> None:
    codec = Codec(4, 2)
    blocks = benchmark(codec.encode, stripe)
    assert len(blocks) == 6
    _record(benchmark, STRIPE)


@pytest.mark.parametrize(
    "lost", [(0,), (0, 1), (2, 3)], ids=lambda t: "lost" + "+".join(map(str, t))
)
def test_decode_4_2(benchmark: Any, stripe: bytes, lost: tuple[int, ...]) -> None:
    codec = Codec(4, 2)
    blocks = [bytes(b) for b in codec.encode(stripe)]
    kept = {i: blocks[i] for i in range(6) if i not in lost}
    data = benchmark(codec.decode, kept)
    assert b"".join(bytes(b) for b in data) == stripe
    _record(benchmark, STRIPE)


@pytest.mark.parametrize(
    "name,fn",
    [("zlib.crc32", zlib.crc32), ("md5", lambda b: hashlib.md5(b).digest())],
    ids=["crc32", "md5"],
)
def test_per_stripe_hashing(
    benchmark: Any, stripe: bytes, name: str, fn: Callable[[bytes], Any]
) -> None:
    """For scale: what the writer spends beside the encode."""
    benchmark(fn, stripe)
    _record(benchmark, STRIPE)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("disks")
    disks = [open_disk(Path(root) / f"d{i}") for i in range(6)]
    with ThreadPoolExecutor(8) as pool:
        yield ErasureStore(disks, ECParams(4, 2, 256 * 1024), pool)


SIZE = 64 << 20


def test_store_write_64_mib(benchmark: Any, store: ErasureStore, stripe: bytes) -> None:
    """End to end: encode + CRC + md5 + write 6 shard files + fsync + rename, 64 KiB writes."""
    chunk = stripe[: 64 * 1024]

    async def write() -> ECLocation:
        w = store.writer(new_volume_id(), {"bench": True})
        for _ in range(SIZE // len(chunk)):
            await w.write(chunk)
        loc = await w.finish()
        await store.delete(loc)
        return loc

    loc = benchmark.pedantic(lambda: asyncio.run(write()), rounds=3, iterations=1)
    assert loc.size == SIZE
    _record(benchmark, SIZE)


@pytest.mark.parametrize("lost", [(), (0, 3)], ids=["healthy", "degraded-lost0+3"])
def test_store_read_64_mib(
    benchmark: Any, store: ErasureStore, stripe: bytes, lost: tuple[int, ...]
) -> None:
    """End to end from the page cache: open, CRC-check, (decode,) join; one stripe ahead."""

    async def setup() -> ECLocation:
        w = store.writer(new_volume_id(), {})
        for _ in range(SIZE // STRIPE):
            await w.write(stripe)
        return await w.finish()

    loc = asyncio.run(setup())
    for i in lost:
        path = store.shard_path(loc, i)
        assert path is not None
        path.unlink()

    async def read() -> int:
        return sum([len(c) async for c in store.read(loc)])

    assert benchmark.pedantic(lambda: asyncio.run(read()), rounds=3, iterations=1) == SIZE
    _record(benchmark, SIZE)
    asyncio.run(store.delete(loc))
