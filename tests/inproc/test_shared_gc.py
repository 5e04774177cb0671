"""The primary's garbage collector when worker processes share the store: it waits out the
grace period on the injected clock and never frees what a worker's table says it reads."""

from __future__ import annotations

import os

from stratum.meta import catalog
from stratum.node import SHARED_GC_GRACE
from stratum.service.readers import ReadingTable, table_path
from tests.inproc.conftest import InProc

MiB = 1 << 20


def _shards(t: InProc) -> set[str]:
    ec = t.node.config.storage.data_dir / "disks" / "hot" / "ec"
    return {p.name.split(".")[0] for p in ec.rglob("*") if p.is_file()}


async def test_retired_volumes_wait_for_the_grace_and_for_readers(inproc: InProc) -> None:
    t = inproc
    t.node.share()  # as the primary of several processes does before its workers start
    worker = ReadingTable(table_path(t.node.run_dir, 1))
    assert (await t.request("PUT", "/gcb")).status == 200
    assert (await t.request("PUT", "/gcb/obj", os.urandom(MiB))).status == 200
    (old,) = _shards(t)
    slot = worker.enter(old)  # a worker process is streaming the old version
    assert (await t.request("PUT", "/gcb/obj", os.urandom(MiB))).status == 200
    assert (await t.request("GET", "/gcb/obj")).status == 200
    service = t.node.service
    assert await service.collect_garbage() == 0  # first seen now: the grace starts
    t.clock.advance(SHARED_GC_GRACE + 1)
    assert await service.collect_garbage() == 0  # ripe, but a worker reads it
    assert old in _shards(t)
    worker.leave(slot)
    assert await service.collect_garbage() == 1
    assert old not in _shards(t)
    assert t.node.meta.read(catalog.pending_garbage) == []
    worker.close()


async def test_a_stopping_primary_frees_what_the_grace_held(inproc: InProc) -> None:
    t = inproc
    t.node.share()
    assert (await t.request("PUT", "/gcb")).status == 200
    assert (await t.request("PUT", "/gcb/obj", os.urandom(MiB))).status == 200
    assert (await t.request("DELETE", "/gcb/obj")).status == 204
    assert await t.node.service.collect_garbage() == 0
    await t.node.service.stop()  # its workers are gone by then: nothing may read
    assert _shards(t) == set()
    await t.node.service.start()  # the fixture stops it again


async def test_a_page_of_garbage_is_forgotten_in_one_commit(inproc: InProc) -> None:
    t = inproc
    t.node.share()  # a grace period on the test's clock: nothing is freed until it passes
    assert (await t.request("PUT", "/gcp")).status == 200
    for i in range(300):  # more than one page (256) of the queue
        assert (await t.request("PUT", f"/gcp/k{i}", b"x" * 100)).status == 200
        assert (await t.request("DELETE", f"/gcp/k{i}")).status == 204
    service, meta = t.node.service, t.node.meta
    assert await service.collect_garbage() == 0  # the grace starts for all 300
    t.clock.advance(SHARED_GC_GRACE + 1)
    commits = meta.commits
    assert await service.collect_garbage() == 300
    assert meta.read(catalog.pending_garbage) == []
    # One commit per page (two here), not one per volume; the background pass, woken by
    # those commits, finds nothing left to commit.
    assert meta.commits - commits <= 3
