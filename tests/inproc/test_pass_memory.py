"""Every background pass over 100,000 records holds a bounded amount of memory.

Each test fills the metadata store straight through the metadata layer (10,000 records a
write transaction: a second or two for 100,000), then runs one pass while sampling the
process's resident memory and bounds how far it rises: what a pass may hold is a page of
records and its own figures, never the records of the store (a decoded volume record is about
2.5 KiB: 250 MiB for 100,000). The listings are measured with ``tracemalloc``. The tier pass has
its own test of the same kind (tests/inproc/test_tiering.py). The event-loop watchdog of
tests/conftest.py is active throughout: no step of a pass may hold the loop over 50 ms.

What is filled is records, not data, where the pass only walks records: the scrub's 100,000
volumes are on a tier that is not local (checked by its provider, so the pass walks without
reading data), the garbage queue's entries name replicas freed already (freeing them again
frees nothing, as after a crash between a free and its commit).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import threading
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from stratum.config import load_config
from stratum.maintenance.backups import MetaBackup
from stratum.meta import catalog, uploads
from stratum.meta.records import BucketRecord, ObjectRecord, UploadRecord, VolumeRecord
from stratum.meta.store import Tx
from stratum.node import Node
from stratum.s3.lifecycle_ops import parse_lifecycle
from stratum.service import lifecycle
from stratum.service.garbage import SEEN_LIMIT
from stratum.service.objects import PutOptions
from stratum.util import memory
from stratum.util.clock import ManualClock
from stratum.web.observe import count_volumes

T = TypeVar("T")

RECORDS = int(os.environ.get("PASS_RECORDS", "100000"))
BATCH = 10_000  # records a write transaction
DAY = 86400.0
# The probe is the process's anonymous resident memory (RssAnon), sampled while the pass
# runs: tracemalloc would multiply these passes' time by ten. Walking the 100,000 records a
# page at a time adds about 6 MiB here (executor threads' allocator arenas, free lists); a
# dict of their 100,000 ids, 14 MiB; their records decoded, over 250 MiB.
RSS_BOUND = 12 << 20

pytestmark = [pytest.mark.scale, pytest.mark.timeout(120)]


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = load_config(
        overrides={
            "storage.data_dir": tmp_path / "data",
            "tiers.hot.disks": [tmp_path / f"h{i}" for i in range(3)],
            "tiers.hot.data_shards": 2,
            "tiers.hot.parity_shards": 1,
            "lifecycle.rate": 100_000_000,  # unpaced: the pace is not what is measured here
        }
    )
    n = Node.open(config, ManualClock(1_800_000_000.0))
    await n.service.start(background=False)  # each test runs its pass itself, alone
    await n.service.create_bucket("bkt", "owner", "us-east-1")
    yield n
    await n.service.stop()
    for tier in n.tiers.values():
        await tier.close()
    n.close()


def _volume(i: int, tier: str, layout: str, location: dict[str, Any], now: float) -> VolumeRecord:
    return VolumeRecord(
        f"fill{i:012d}", tier, layout, location, 10, "0" * 32, now,
        last_access=now, access_count=1, bucket="bkt", key=f"fill/{i:06d}",
    )  # fmt: skip


async def _fill(node: Node, write: Callable[[Tx, int], None], count: int = RECORDS) -> None:
    """``write(tx, i)`` for i in range(count), BATCH of them a transaction."""

    def batch(start: int, tx: Tx) -> None:
        for i in range(start, min(start + BATCH, count)):
            write(tx, i)

    for start in range(0, count, BATCH):
        await node.meta.write(functools.partial(batch, start))


def _objects(tier: str, layout: str, location: dict[str, Any], now: float) -> Callable[..., None]:
    def write(tx: Tx, i: int) -> None:
        volume = _volume(i, tier, layout, location | {"volume_id": f"fill{i:012d}"}, now)
        catalog.put_volume(tx, volume)
        catalog.put_object(tx, "bkt", ObjectRecord(volume.key, volume.volume_id, 10, '"e"', now))

    return write


async def _peak(run: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """What ``run`` returns and the most Python memory it held at once above the start."""
    await asyncio.to_thread(tracemalloc.start)  # (stopping frees every trace: in a thread)
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = await run()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        await asyncio.to_thread(tracemalloc.stop)


async def _rss_peak(run: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """What ``run`` returns and how far the process's anonymous resident memory rose above
    its start while it ran (sampled every 10 ms from a thread). For passes that allocate in
    many small steps, where tracemalloc would multiply their time by ten; the free memory
    the fill left in the allocators is handed back first, so that a pass cannot hide growth
    in it."""
    gc.collect()
    memory.release()
    before = _anonymous_rss()
    top = before
    done = threading.Event()

    def sample() -> None:
        nonlocal top
        while not done.wait(0.01):
            top = max(top, _anonymous_rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = await run()
    finally:
        done.set()
        await asyncio.to_thread(sampler.join)
    return result, max(top, _anonymous_rss()) - before


def _anonymous_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no RssAnon in /proc/self/status")


async def _put(node: Node, key: str, data: bytes) -> None:
    await node.service.put_object("bkt", key, _chunks(data), PutOptions(owner_id="owner"))


async def test_scrub_pass(node: Node) -> None:
    await _put(node, "real-small", b"s" * 1000)
    await _put(node, "real-large", os.urandom(300_000))
    await _fill(node, _objects("elsewhere", "seg", {}, node.clock.now()))
    figures, peak = await _rss_peak(lambda: node.maintenance.scrub())
    assert figures.volumes == RECORDS + 2 and figures.damaged == 0
    assert peak < RSS_BOUND, f"scrub over {RECORDS} volumes: {peak >> 10} KiB more resident"


async def test_lifecycle_pass(node: Node) -> None:
    """The pass examines every version under its rules' prefixes (none due yet) and every
    upload in progress (none old enough to abort)."""
    now = node.clock.now()
    await _fill(node, _objects("hot", "seg", {}, now))

    def upload(tx: Tx, i: int) -> None:
        record = UploadRecord(f"{i:032x}", "bkt", f"up/{i:06d}", "owner", now)
        uploads.put_upload(tx, record)

    await _fill(node, upload)
    rules = (
        b"<LifecycleConfiguration><Rule><ID>r</ID><Filter><Prefix></Prefix></Filter>"
        b"<Status>Enabled</Status><Expiration><Days>30</Days></Expiration>"
        b"<AbortIncompleteMultipartUpload><DaysAfterInitiation>30</DaysAfterInitiation>"
        b"</AbortIncompleteMultipartUpload></Rule></LifecycleConfiguration>"
    )
    await node.service.set_bucket_setting("bkt", "owner", lifecycle.SETTING, parse_lifecycle(rules))
    node.lifecycle.page = 500  # fewer pages (each commits where the pass stands)
    report, peak = await _rss_peak(node.lifecycle.run_pass)
    assert report.examined == RECORDS and report.expired == 0 and report.aborted == 0
    assert peak < RSS_BOUND, f"lifecycle over {RECORDS} keys: {peak >> 10} KiB more resident"


async def test_garbage_collection_pass(node: Node) -> None:
    await _put(node, "victim", b"v" * 1000)
    gone = node.service.head_object("bkt", "victim", "owner").volume
    await node.service.delete_object("bkt", "victim", "owner")
    assert await node.service.collect_garbage() == 1  # its replicas are freed: not there now
    location = gone.location

    def queue(tx: Tx, i: int) -> None:
        entry = VolumeRecord(
            f"gc{i:012d}", gone.tier, gone.layout, location, 1000, gone.md5, gone.created
        )
        tx.put("gc", entry.volume_id.encode(), entry.encode())

    await _fill(node, queue)
    freed, peak = await _rss_peak(node.service.collect_garbage)
    assert freed == RECORDS
    assert node.meta.read(lambda tx: tx.entries("gc")) == 0
    assert peak < RSS_BOUND, f"collecting {RECORDS} entries: {peak >> 10} KiB more resident"


async def test_garbage_collection_with_a_grace_period(node: Node) -> None:
    """With worker processes each entry waits a grace period from the pass that first saw it:
    a pass remembers about SEEN_LIMIT of them, and frees those once their wait is over."""
    location = {"v": 1, "volume_id": "", "size": 1, "crc32": 0, "meta_size": 0, "replicas": []}

    def queue(tx: Tx, i: int) -> None:
        entry = VolumeRecord(f"gc{i:012d}", "hot", "seg", location, 1, "0" * 32, 0.0)
        tx.put("gc", entry.volume_id.encode(), entry.encode())

    await _fill(node, queue)
    node.service.garbage.gc_grace = 5.0
    freed, peak = await _rss_peak(node.service.collect_garbage)
    assert freed == 0
    assert peak < RSS_BOUND, f"waiting out {RECORDS} entries: {peak >> 10} KiB more resident"
    node.clock.advance(5.0)  # type: ignore[attr-defined]
    freed = await node.service.collect_garbage()
    assert SEEN_LIMIT <= freed < SEEN_LIMIT + 256  # (it stops at the end of a page)


async def test_orphan_sweep_at_start_up(node: Node) -> None:
    """The sweep's view of the volumes in use is a set of 8-byte hashes (stratum.service.idset):
    it grows with the erasure-coded volumes (small objects' are left out), 8 bytes each."""
    await _put(node, "real-large", os.urandom(300_000))
    location = node.service.head_object("bkt", "real-large", "owner").volume.location
    await _fill(node, _objects("hot", "ec", dict(location), node.clock.now()))
    _swept, peak = await _rss_peak(node.service.garbage.sweep_orphans)
    # 8 bytes a hash, twice per volume before freezing (its id and its storage id), and a
    # bucket's worth of Python ints while sorting: a Python set of the ids would be ~10 MiB.
    assert peak < 24 * RECORDS + (2 << 20), f"the sweep's view peaked at {peak >> 10} KiB"


async def test_tier_counts_for_metrics(node: Node) -> None:
    await _fill(node, _objects("hot", "seg", {}, node.clock.now()))
    counts, peak = await _rss_peak(lambda: asyncio.to_thread(count_volumes, node.meta))
    assert counts["hot"] == (RECORDS, 10 * RECORDS)
    assert peak < RSS_BOUND, f"counting {RECORDS} volumes: {peak >> 10} KiB more resident"


async def test_metadata_backup(node: Node, tmp_path: Path) -> None:
    """LMDB copies the store in C (tracemalloc would not see it): resident memory is the
    probe, and the copy's pages are page cache, not counted in it."""
    await _fill(node, _objects("hot", "seg", {}, node.clock.now()))
    disks = [disk.path for disk in node.tiers["hot"].disks]
    backup = MetaBackup(node.meta, disks, node.clock, interval=DAY, executor=node.executor)
    result, peak = await _rss_peak(lambda: backup.backup_now(force=True))
    assert sorted(result.written) == sorted(disks)
    assert peak < RSS_BOUND, f"the backup: {peak >> 10} KiB more resident"


async def test_bucket_and_upload_listings(node: Node) -> None:
    """ListBuckets and ListMultipartUploads read a page, whatever the store holds."""
    now = node.clock.now()

    def bucket(tx: Tx, i: int) -> None:
        catalog.put_bucket(tx, BucketRecord(f"b{i:06d}", "owner", now))

    await _fill(node, bucket)

    def upload(tx: Tx, i: int) -> None:
        uploads.put_upload(tx, UploadRecord(f"{i:032x}", "bkt", f"up/{i % 7}/{i:06d}", "o", now))

    await _fill(node, upload)

    async def list_both() -> tuple[Any, Any]:
        mine = await node.service.list_buckets("owner", prefix="b0", limit=1000)
        page = await node.multipart.list_uploads("bkt", "owner", delimiter="/", prefix="up/")
        return mine, page

    (mine, page), peak = await _peak(list_both)
    assert [b.name for b in mine[0]] == [f"b{i:06d}" for i in range(1000)] and mine[1]
    assert page.common_prefixes == [f"up/{n}/" for n in range(7)]
    assert peak < 2 << 20, f"two listings peaked at {peak >> 10} KiB"  # 1,000 buckets
