"""Compaction while the S3 API serves: GETs, PUTs and DELETEs go on as records move.

The real Node and S3 app in process, with small segments (32 KiB) so that overwrites and
deletes of small objects leave many segments worth compacting within seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stratum.service.objects import PutOptions
from tests.inproc.conftest import InProc, serving

KiB, MiB = 1 << 10, 1 << 20


@pytest.fixture
async def compacting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[InProc]:
    overrides: dict[str, Any] = {
        "storage.data_dir": tmp_path / "data",
        "storage.segment_size": 32 * KiB,
        "storage.small_object_threshold": 16 * KiB,
        "tiers.hot.disks": [str(tmp_path / f"disk{i}") for i in range(3)],
        "tiers.hot.data_shards": 2,
        "tiers.hot.parity_shards": 1,
        "tiering.enabled": False,
    }
    async with serving(monkeypatch, overrides) as running:
        yield running


def _version(key: str, n: int, rng: random.Random) -> bytes:
    return f"{key}:{n}:".encode() + rng.randbytes(rng.choice([200, 700, 3000]))


async def _get(t: InProc, key: str) -> tuple[int, bytes]:
    response = await t.request("GET", f"/cmp/{key}")
    return response.status, await response.read()


async def test_compaction_runs_under_gets_puts_and_deletes(compacting: InProc) -> None:
    t = compacting
    rng = random.Random(11)
    assert (await t.request("PUT", "/cmp")).status == 200
    stable = {f"s{i}": rng.randbytes(rng.choice([300, 2000])) for i in range(40)}
    written: dict[str, list[bytes]] = {f"c{i}": [] for i in range(80)}
    last: dict[str, bytes | None] = {}
    for i, (key, data) in enumerate(stable.items()):  # stable and churning objects interleave
        assert (await t.request("PUT", f"/cmp/{key}", data)).status == 200
        for churn in (f"c{2 * i}", f"c{2 * i + 1}"):
            data = _version(churn, 0, rng)
            written[churn].append(data)
            last[churn] = data
            assert (await t.request("PUT", f"/cmp/{churn}", data)).status == 200
    failures: list[str] = []
    stop = asyncio.Event()

    async def churn(half: int) -> None:  # each key is written by one task: its last op is known
        mine = [k for i, k in enumerate(written) if i % 2 == half]
        local = random.Random(half)
        while not stop.is_set():
            key = local.choice(mine)
            if local.random() < 0.2:
                assert (await t.request("DELETE", f"/cmp/{key}")).status == 204
                last[key] = None
                continue
            data = _version(key, len(written[key]), local)
            written[key].append(data)
            assert (await t.request("PUT", f"/cmp/{key}", data)).status == 200
            last[key] = data

    async def read() -> None:
        local = random.Random(7)
        while not stop.is_set():
            key = local.choice(list(stable))
            status, body = await _get(t, key)
            if (status, body) != (200, stable[key]):
                failures.append(f"GET {key}: {status}")
            key = local.choice(list(written))
            status, body = await _get(t, key)
            if status == 200 and body not in written[key]:
                failures.append(f"GET {key}: content of no version written")
            elif status not in (200, 404):
                failures.append(f"GET {key}: {status}")

    totals = t.node.compaction.totals
    enough = asyncio.Event()  # compaction has moved and removed plenty under the load

    async def compact() -> None:
        while not stop.is_set():
            await t.node.service.collect_garbage()
            await t.node.compaction.run_pass(force_walk=True)
            if totals.moved >= 30 and totals.removed >= 30:
                enough.set()
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(c) for c in (churn(0), churn(1), read(), read(), compact())]
    await asyncio.wait_for(enough.wait(), 90)
    await asyncio.sleep(1)  # a little more of everything at once
    stop.set()
    await asyncio.gather(*tasks)
    assert failures == []
    assert totals.moved >= 30 and totals.removed >= 30, totals
    assert t.node.maintenance.disk_errors == {}  # no read ever met a freed copy
    for _ in range(3):
        await t.node.service.collect_garbage()
        await t.node.compaction.run_pass(force_walk=True)
    for key, data in stable.items():
        assert await _get(t, key) == (200, data)
    for key, data in last.items():
        status, got = await _get(t, key)
        assert (status, got) == (200, data) if data is not None else status == 404


async def test_a_read_in_flight_keeps_the_copy_compaction_moved_away(compacting: InProc) -> None:
    """A GET that looked the location up before the move reads the old copy: the move's
    commit queues it for the collector, which does not free what a read is streaming."""
    t = compacting
    service, root = t.node.service, t.node.root.user.canonical_id
    await service.create_bucket("mpb", root, "us-east-1")
    rng = random.Random(3)
    opts = PutOptions(root)

    async def body(data: bytes) -> AsyncIterator[bytes]:
        yield data

    around = [f"n{i}" for i in range(200)]
    for key in around[:100]:  # neighbours in the segments, deleted below
        await service.put_object("mpb", key, body(rng.randbytes(300)), opts)
    parts = [rng.randbytes(5 * MiB), rng.randbytes(300)]
    upload = await t.node.multipart.create("mpb", "movie", opts)
    etags = []
    for number, data in enumerate(parts, 1):
        part = await t.node.multipart.upload_part(
            "mpb", "movie", upload.upload_id, number, body(data), opts
        )
        etags.append(part.etag)
    from stratum.service.multipart import CompletedPart

    done = [CompletedPart(n, e) for n, e in enumerate(etags, 1)]
    await t.node.multipart.complete("mpb", "movie", upload.upload_id, done, root)
    for key in around[100:]:
        await service.put_object("mpb", key, body(rng.randbytes(300)), opts)
    for key in around:
        await service.delete_object("mpb", key, root)
    await service.collect_garbage()

    view = service.head_object("mpb", "movie", root)
    before: dict[str, Any] = view.volume.location["parts"][1]["location"]
    reading = service.read_volume(view.volume, 0, view.record.size)
    first = await reading.__anext__()  # the read is in flight, in the large first part
    figures = await t.node.compaction.run_pass(force_walk=True)
    after = service.head_object("mpb", "movie", root).volume.location["parts"][1]["location"]
    assert figures.moved and after["replicas"] != before["replicas"]  # the small part moved
    assert await service.collect_garbage() == 0  # its old copy is being read: kept
    rest = b"".join([chunk async for chunk in reading])
    assert hashlib.md5(first + rest).digest() == hashlib.md5(b"".join(parts)).digest()
    assert await service.collect_garbage() >= 1  # the read is over: freed now
    again = service.head_object("mpb", "movie", root)
    got = b"".join([c async for c in service.read_volume(again.volume, 0, again.record.size)])
    assert got == b"".join(parts)
