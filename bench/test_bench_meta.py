"""Metadata: put/get rates and LIST of 1,000 keys from a bucket of 1,000,000.

The million-key store is built once per machine under ``STRATUM_BENCH_DIR`` (default
``/tmp/stratum-bench``) and reused, since filling it takes a while.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratum.meta import catalog
from stratum.meta.records import ObjectRecord
from stratum.meta.store import MetaStore, Tx

BENCH_DIR = Path(os.environ.get("STRATUM_BENCH_DIR", "/tmp/stratum-bench"))
MILLION = 1_000_000


def _record(key: str) -> ObjectRecord:
    return ObjectRecord(
        key=key,
        volume_id="0192f1c3a4b5" + "ab" * 10,
        size=4096,
        etag='"d41d8cd98f00b204e9800998ecf8427e"',
        last_modified=1_700_000_000.0,
        content_type="application/octet-stream",
    )


def _key(i: int) -> str:
    # a realistic tree: 1,000 "directories" of 1,000 files
    return f"backups/host-{i % 1000:03d}/2026/file-{i:07d}.tar.zst"


@pytest.fixture(scope="module")
def million() -> Iterator[MetaStore]:
    path = BENCH_DIR / "meta-1m"
    marker = path / "filled"
    store = MetaStore(path)
    store.open()
    if not marker.exists():
        for start in range(0, MILLION, 20_000):
            batch = range(start, min(start + 20_000, MILLION))

            def fill(tx: Tx, batch: range = batch) -> None:
                for i in batch:
                    catalog.put_object(tx, "big", _record(_key(i)))

            store.write_sync(fill)
        marker.write_text("1")
    yield store
    store.close()


def test_list_1000_of_1m(benchmark: Any, million: MetaStore) -> None:
    prefixes = [f"backups/host-{random.randrange(1000):03d}/" for _ in range(64)]
    cycle = itertools.cycle(prefixes)

    def page() -> int:
        prefix = next(cycle)
        result = million.read(
            lambda tx: catalog.list_objects(tx, "big", prefix=prefix, max_keys=1000)
        )
        return len(result.objects)

    assert benchmark(page) == 1000


def test_list_delimiter_of_1m(benchmark: Any, million: MetaStore) -> None:
    """Top-level 'directories' of a million keys: a jump per common prefix, not a scan."""

    def page() -> int:
        result = million.read(
            lambda tx: catalog.list_objects(
                tx, "big", prefix="backups/", delimiter="/", max_keys=1000
            )
        )
        return len(result.common_prefixes)

    assert benchmark(page) == 1000


def test_get_from_1m(benchmark: Any, million: MetaStore) -> None:
    keys = [_key(random.randrange(MILLION)) for _ in range(1000)]
    cycle = itertools.cycle(keys)

    def get() -> bool:
        key = next(cycle)
        return million.read(lambda tx: catalog.get_object(tx, "big", key)) is not None

    assert benchmark(get)


def test_put_batched_1000(benchmark: Any, tmp_path: Path) -> None:
    """1,000 object records in one transaction (what group commit gives concurrent PUTs)."""
    store = MetaStore(tmp_path / "meta")
    store.open()
    counter = itertools.count()
    try:

        def put_batch() -> None:
            base = next(counter) * 1000

            def fill(tx: Tx) -> None:
                for i in range(base, base + 1000):
                    catalog.put_object(tx, "b", _record(_key(i)))

            store.write_sync(fill)

        benchmark.pedantic(put_batch, rounds=10, iterations=1)
    finally:
        store.close()
