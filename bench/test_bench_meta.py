"""Metadata: put/get rates, LIST of 1,000 keys from a bucket of 1,000,000, and a page of
ListObjectVersions from a key of 100,000 versions (time, and memory bounded by the page).

The million-key store is built once per machine under ``STRATUM_BENCH_DIR`` (default
``/tmp/stratum-bench``) and reused, since filling it takes a while.
"""

from __future__ import annotations

import itertools
import os
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratum.meta import catalog, versions
from stratum.meta.records import BucketRecord, ObjectRecord, VolumeRecord
from stratum.meta.store import MetaStore, Tx
from stratum.meta.version_listing import list_versions
from stratum.meta.versions import OrderClock
from stratum.service import versioning

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


HISTORY = 100_000


@pytest.fixture(scope="module")
def history() -> Iterator[tuple[MetaStore, list[str]]]:
    """One key with 100,000 versions (and a key of 2,000 beside it), built once per machine."""
    path = BENCH_DIR / "meta-versions-100k"
    marker = path / "filled"
    store = MetaStore(path)
    store.open()
    bucket = BucketRecord("hist", "owner", 0.0, versioning="Enabled")
    if not marker.exists():
        clock = OrderClock()
        store.write_sync(lambda tx: catalog.put_bucket(tx, bucket))
        for key, count in (("one-key", HISTORY), ("small-key", 2000)):
            for start in range(0, count, 10_000):

                def fill(tx: Tx, start: int = start, key: str = key, count: int = count) -> None:
                    for n in range(start, min(start + 10_000, count)):
                        order = clock.next(1_700_000_000.0 + n)
                        record = _record(key)
                        record.order = record.version_id = order.hex()
                        versioning.write_version(tx, bucket, record, 0.0)

                store.write_sync(fill)
        marker.write_text("1")
    ids = store.read(lambda tx: [r.version_id for r in versions.history(tx, "hist", "one-key")])
    yield store, ids
    store.close()


def test_list_versions_page_of_a_100k_key(benchmark: Any, history: Any) -> None:
    """A page of 1,000 versions from a random one of 100,000: one seek, then the page."""
    store, ids = history
    markers = itertools.cycle(random.Random(3).sample(ids[: HISTORY - 1000], 64))

    def page() -> int:
        marker = next(markers)
        found = store.read(
            lambda tx: list_versions(
                tx, "hist", key_marker="one-key", version_marker=marker, max_keys=1000
            )
        )
        return len(found.entries)

    assert benchmark(page) == 1000


def test_list_versions_memory_is_the_pages(history: Any) -> None:
    """Peak memory of a page is the page's, whatever the history behind it: the same for a
    key of 100,000 versions as for one of 2,000."""
    store, ids = history

    def peak(key: str, marker: str) -> int:
        tracemalloc.start()
        try:
            store.read(
                lambda tx: list_versions(
                    tx,
                    "hist",
                    key_marker=key if marker else "",
                    version_marker=marker,
                    max_keys=1000,
                )
            )
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    big = max(peak("one-key", ids[50_000]), peak("", ""))
    small = peak("small-key", "")
    print(f"peak of a 1,000-version page: {big / 1024:.0f} KiB (2,000: {small / 1024:.0f} KiB)")
    assert big < 2 * small + (256 << 10)


@pytest.mark.parametrize("state", ["", "Enabled"])
def test_put_commit_1000(benchmark: Any, tmp_path: Path, state: str) -> None:
    """What a PUT's commit does to the metadata, 1,000 in one transaction, into a bucket never
    versioned and one versioned: its volume, its version and the key's current object."""
    store = MetaStore(tmp_path / "meta")
    store.open()
    bucket = BucketRecord("b", "owner", 0.0, versioning=state)
    store.write_sync(lambda tx: catalog.put_bucket(tx, bucket))
    clock = OrderClock()
    counter = itertools.count()
    try:

        def put_batch() -> None:
            base = next(counter) * 1000

            def commit(tx: Tx) -> None:
                for i in range(base, base + 1000):
                    order = clock.next(1_700_000_000.0 + i)
                    record = _record(_key(i))
                    record.order = order.hex()
                    record.version_id = versioning.version_id_for(state, order)
                    catalog.put_volume(tx, _volume(record))
                    versioning.retire(tx, versioning.write_version(tx, bucket, record, 0.0))

            store.write_sync(commit)

        benchmark.pedantic(put_batch, rounds=10, iterations=1)
    finally:
        store.close()


def _volume(record: ObjectRecord) -> VolumeRecord:
    return VolumeRecord(
        record.volume_id + record.order[:8],
        "hot",
        "seg",
        {"v": 1, "replicas": [["a" * 32, 1, 48], ["b" * 32, 1, 48], ["c" * 32, 1, 48]]},
        4096,
        "d41d8cd98f00b204e9800998ecf8427e",
        1_700_000_000.0,
        order=record.order,
    )
