"""Micro-benchmark: 4 KiB puts per second into a SegmentStore, at concurrency 1 and 32.

Run with ``.venv/bin/pytest bench/test_bench_segments.py``. Disks are directories under
``$STRATUM_BENCH_DIR`` (default: pytest's tmp_path), six of them with three copies, as for a
4+2 pool; put them on real, separate disks to measure something meaningful: with all six on
one device every fdatasync queues behind the others.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

try:
    import stratum  # noqa: F401
except ImportError:  # bench/ is not a package: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stratum.block.disk import open_disk
from stratum.block.segments import SegmentStore

PUTS_PER_ROUND = 512
OBJECT = os.urandom(4096)


@pytest.fixture
def store_and_loop(tmp_path: Path) -> Iterator[tuple[asyncio.AbstractEventLoop, SegmentStore]]:
    base = Path(os.environ.get("STRATUM_BENCH_DIR", tmp_path)) / uuid.uuid4().hex[:8]
    disks = [open_disk(base / f"disk{i}") for i in range(6)]
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(4)
    store = SegmentStore(disks, 3, executor)
    store.start()
    yield loop, store
    loop.run_until_complete(store.close())
    loop.close()
    executor.shutdown()


async def _puts(store: SegmentStore, concurrency: int) -> None:
    async def worker(count: int) -> None:
        for _ in range(count):
            await store.put(uuid.uuid4().hex, OBJECT, {"bucket": "b", "key": "k", "mtime": 0})

    await asyncio.gather(*(worker(PUTS_PER_ROUND // concurrency) for _ in range(concurrency)))


@pytest.mark.parametrize("concurrency", [1, 32])
def test_put_4k(
    benchmark: Any,
    store_and_loop: tuple[asyncio.AbstractEventLoop, SegmentStore],
    concurrency: int,
) -> None:
    loop, store = store_and_loop
    loop.run_until_complete(_puts(store, concurrency))  # warm up: segments exist
    benchmark.pedantic(
        lambda: loop.run_until_complete(_puts(store, concurrency)), rounds=5, iterations=1
    )
    puts_per_second = PUTS_PER_ROUND / benchmark.stats.stats.mean
    benchmark.extra_info["puts_per_second"] = round(puts_per_second)
    print(f"\n4 KiB puts, concurrency {concurrency}: {puts_per_second:,.0f}/s")
