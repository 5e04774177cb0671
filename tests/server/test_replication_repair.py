"""Drift repair page by page: this site's versions (a real LMDB store in the test's process)
compared with a real Stratum target's listing, two versions a page on each side, stopped
after a page and resumed there."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratum.config import Credentials, ReplicationTarget, load_config
from stratum.meta import catalog, versions
from stratum.meta.records import BucketRecord, ObjectRecord
from stratum.meta.store import MetaStore, Tx
from stratum.replication import queue, repair
from stratum.replication.client import TargetClient
from stratum.replication.repair import Comparison
from stratum.service import versioning
from tests.server.conftest import ACCESS_KEY, SECRET_KEY
from tests.server.replication_sites import Site, free_port, site_config, versioned_bucket

BUCKET = "drift"
MISSING = {1, 4, 5, 10}  # versions (in listing order) the target lacks, on several pages


@pytest.fixture(scope="module")
def target_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A Stratum granting the test's key replication rights (it keeps the ids it is sent)."""
    port = free_port()
    site = Site("b", site_config(tmp_path_factory.mktemp("target"), "b", 2, port, {}), port)
    site.start()
    yield site
    assert site.server is not None
    assert site.server.stop() == 0


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[MetaStore]:
    """This site's metadata (tests/unit's ``store`` fixture, which this ring does not see)."""
    store = MetaStore(tmp_path / "meta")
    store.open()
    yield store
    store.close()


def target_of(tmp_path: Path, site: Site, bucket: str) -> ReplicationTarget:
    path = tmp_path / "stratum.toml"
    path.write_text(
        '[server]\nsite_id = 1\n\n[replication.b]\nbuckets = ["*"]\n'
        f'endpoint = "http://127.0.0.1:{site.port}"\nbucket = "{bucket}"\n'
    )
    [target] = load_config(path).replication
    return target


def local_versions(meta: MetaStore) -> list[ObjectRecord]:
    """Twelve versions of four keys on this site, in S3's listing order."""
    bucket = BucketRecord(name=BUCKET, owner_id="o", created=0.0, versioning="Enabled")
    clock = versions.OrderClock(1)
    written = []
    for i in range(12):
        order = clock.next(1000.0 + i)
        record = ObjectRecord(
            key=f"k{i % 4}",
            volume_id=order.hex(),
            size=1,
            etag='"0123456789abcdef0123456789abcdef"',
            last_modified=1000.0 + i,
            version_id=order.hex(),
            order=order.hex(),
        )

        def commit(tx: Tx, record: ObjectRecord = record) -> None:
            catalog.put_bucket(tx, bucket)
            versioning.write_version(tx, bucket, record, 0.0)

        meta.write_sync(commit)
        written.append(record)
    return sorted(written, key=lambda r: (r.key, versions.invert(bytes.fromhex(r.order))))


def give_target(site: Site, bucket: str, records: list[ObjectRecord]) -> None:
    """The versions as replicas on the target, with their ids."""
    s3 = site.client()
    versioned_bucket(bucket, s3)
    for record in records:

        def add_headers(request: Any, record: ObjectRecord = record, **_: Any) -> None:
            request.headers["x-stratum-replica-version-id"] = record.version_id
            request.headers["x-stratum-replica-mtime"] = repr(record.last_modified)

        s3.meta.events.register("before-sign.s3.PutObject", add_headers)
        s3.put_object(Bucket=bucket, Key=record.key, Body=b"x")
        s3.meta.events.unregister("before-sign.s3.PutObject", add_headers)


@pytest.fixture
def setup(
    tmp_path: Path, meta: MetaStore, target_site: Site, request: pytest.FixtureRequest
) -> tuple[ReplicationTarget, list[ObjectRecord], list[str]]:
    """This site's versions, the target's (all but MISSING), and the ids it lacks."""
    listed = local_versions(meta)
    # a target bucket of the test's own (the target site is shared by the module's tests)
    bucket = request.node.name.replace("_", "-")[5:45]
    target = target_of(tmp_path, target_site, bucket)
    give_target(target_site, bucket, [r for i, r in enumerate(listed) if i not in MISSING])
    return target, listed, [r.version_id for i, r in enumerate(listed) if i in MISSING]


def queued(meta: MetaStore) -> list[str]:
    return sorted(e.version_id for _k, e in meta.read(lambda tx: list(queue.entries(tx, "b"))))


async def test_a_comparison_stopped_after_a_page_resumes_after_it(
    meta: MetaStore, setup: tuple[ReplicationTarget, list[ObjectRecord], list[str]]
) -> None:
    target, listed, missing = setup
    client = TargetClient(target, Credentials(ACCESS_KEY, SECRET_KEY))
    await client.start()
    read = functools.partial(repair.read_progress, target="b")
    try:
        first = asyncio.create_task(Comparison(meta, target, client, lambda: 5.0, page=2).run())
        for _tick in range(20_000):  # no event to wait for: the record, read every ms
            if first.done() or meta.read(read).get("key"):
                break
            await asyncio.sleep(0.001)
        assert not first.done(), "no page's progress was saved before the comparison ended"
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        progress = meta.read(read)
        position = [(r.key, r.version_id) for r in listed].index(
            (progress["key"], progress["version"])
        )
        assert progress["bucket"] == BUCKET
        assert progress["compared"] == position + 1  # the figures of the pages before it
        assert 0 < position < len(listed) - 1
        result = await Comparison(meta, target, client, lambda: 6.0, page=2).run()
    finally:
        await client.close()
    # each version compared once over both runs, every missing one queued again, once
    assert result["compared"] == len(listed)
    assert queued(meta) == sorted(missing)
    assert meta.read(read)["last"] == result and meta.read(read)["key"] == ""


async def test_a_format_1_record_resumes_at_the_start_of_its_bucket(
    meta: MetaStore, setup: tuple[ReplicationTarget, list[ObjectRecord], list[str]]
) -> None:
    target, _listed, missing = setup
    old = {"bucket": BUCKET, "started": 1.0, "compared": 3, "resent": 0, "last": None}
    record = b"\x01" + json.dumps(old).encode()
    await meta.write(lambda tx: tx.put(queue.DB, repair.progress_key("b"), record))
    read = functools.partial(repair.read_progress, target="b")
    assert repair.known_keeps_ids(meta.read(read), target.endpoint) is None
    client = TargetClient(target, Credentials(ACCESS_KEY, SECRET_KEY))
    await client.start()
    try:
        result = await Comparison(meta, target, client, lambda: 6.0, page=2).run()
    finally:
        await client.close()
    assert (result["started"], result["compared"], result["resent"]) == (1.0, 3 + 12, 4)
    assert queued(meta) == sorted(missing)
    # what the pusher learns of a target is kept next to it, for the endpoint it learnt from
    await meta.write(lambda tx: repair.note_keeps_ids(tx, "b", target.endpoint, True))
    progress = meta.read(read)
    assert progress["last"] == result
    assert repair.known_keeps_ids(progress, target.endpoint) is True
    assert repair.known_keeps_ids(progress, "http://elsewhere:9000") is None
