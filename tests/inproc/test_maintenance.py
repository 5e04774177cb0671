"""Scrub, heal and disk states on a real node with six disk directories."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import os
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from stratum.block.errors import VolumeUnreadable
from stratum.config import load_config
from stratum.maintenance import heal as heal_module
from stratum.meta import catalog
from stratum.meta.records import VolumeRecord
from stratum.node import Node
from stratum.service import errors
from stratum.service.objects import PutOptions
from stratum.util.clock import ManualClock
from stratum.web.observe import Observer
from tests.unit.test_metrics import parse_text, sample


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    disks = [tmp_path / f"d{i}" for i in range(6)]
    config = load_config(
        overrides={"storage.data_dir": tmp_path / "data", "tiers.hot.disks": disks}
    )
    n = Node.open(config, ManualClock())
    await n.service.start()
    await n.service.create_bucket("bkt", "owner", "us-east-1")
    yield n
    await n.maintenance.stop()  # cancels a rebuild a test may have started
    await n.service.stop()
    for tier in n.tiers.values():
        await tier.close()
    n.close()


async def _fill(node: Node) -> dict[str, bytes]:
    objects = {f"big{i}": os.urandom(600_000 + i) for i in range(6)}
    objects.update({f"small{i}": os.urandom(3000 + i) for i in range(6)})
    for key, data in objects.items():
        await node.service.put_object("bkt", key, _chunks(data), PutOptions(owner_id="owner"))
    return objects


async def _read_all(node: Node, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        view = node.service.head_object("bkt", key, "owner")
        got = b"".join(
            [c async for c in node.service.read_volume(view.volume, 0, view.record.size)]
        )
        assert hashlib.md5(got).digest() == hashlib.md5(data).digest(), key


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


async def test_one_scrub_pass_repairs_bitrot(node: Node, tmp_path: Path) -> None:
    objects = await _fill(node)
    shards = sorted(tmp_path.glob("d[01]/ec/*/*.shard"))
    for shard in shards:
        _flip(shard, 200)  # inside the first block: its CRC no longer matches
    for seg in sorted(tmp_path.glob("d2/seg/*.seg")):
        _flip(seg, 48 + 56 + 40)  # inside the first record's meta/payload
    first = await node.maintenance.scrub()
    assert first.damaged >= len({s.name.split(".")[0] for s in shards})
    assert first.repaired == first.damaged and first.unrepaired == 0
    second = await node.maintenance.scrub()
    assert second.damaged == 0, "one pass repaired everything"
    await _read_all(node, objects)


async def test_replaced_disk_is_refilled(node: Node, tmp_path: Path) -> None:
    objects = await _fill(node)
    before = len(list((tmp_path / "d3").glob("ec/*/*.shard")))
    assert before > 0
    shutil.rmtree(tmp_path / "d3")
    (tmp_path / "d3").mkdir()  # a new, empty disk mounted at the same place
    await node.maintenance.probe_disks()
    assert node.tiers["hot"].disks[3].disk_id in node.maintenance.rebuilding
    await node.maintenance.scrub()
    assert len(list((tmp_path / "d3").glob("ec/*/*.shard"))) == before
    await _read_all(node, objects)


async def test_a_scrub_asked_for_right_after_a_disk_swap_refills_the_new_disks(
    node: Node, tmp_path: Path
) -> None:
    objects = await _fill(node)
    before = {name: len(list((tmp_path / name).glob("ec/*/*.shard"))) for name in ("d0", "d4")}
    for name in before:
        shutil.rmtree(tmp_path / name)
        (tmp_path / name).mkdir()  # empty disks at the same paths, before any probe saw them
    figures = await node.maintenance.scrub()
    assert figures.unrepaired == 0 and figures.failures == [], figures
    assert figures.repaired == figures.damaged > 0
    after = {name: len(list((tmp_path / name).glob("ec/*/*.shard"))) for name in before}
    assert after == before
    assert not node.maintenance.rebuilding, "refilled by this pass"
    again = await node.maintenance.scrub()
    assert again.damaged == 0, again
    await _read_all(node, objects)


async def test_offline_disks_and_write_refusal(node: Node, tmp_path: Path) -> None:
    objects = await _fill(node)
    for name in ("d0", "d1"):
        shutil.rmtree(tmp_path / name)
    await node.maintenance.probe_disks()
    states = {d["path"]: d["state"] for d in node.maintenance.status()["disks"]}
    assert states[str(tmp_path / "d0")].startswith("offline")
    await _read_all(node, objects)  # 2 of 6 disks gone: everything still reads
    more = os.urandom(700_000)  # writes go on with 4 disks = k, below k+1? no: 4 < 5
    with pytest.raises(errors.TierUnavailable):
        await node.service.put_object("bkt", "more", _chunks(more), PutOptions(owner_id="owner"))
    (tmp_path / "d0").mkdir()
    await node.maintenance.probe_disks()  # d0 back (empty: rebuilt), 5 online = k+1
    record = await node.service.put_object(
        "bkt", "more", _chunks(more), PutOptions(owner_id="owner")
    )
    vol = node.meta.read(lambda tx: catalog.get_volume(tx, record.volume_id))
    assert vol is not None
    d1 = node.tiers["hot"].disks[1].disk_id
    assert d1 not in vol.location["disks"], "no new shard goes to an offline disk"


# ---- healing what cannot be repaired now ---------------------------------------------------


def _volume(node: Node, key: str) -> VolumeRecord:
    return node.service.head_object("bkt", key, "owner").volume


def _damage_beyond_repair(node: Node, tmp_path: Path, key: str) -> list[tuple[Path, int]]:
    """Flip a byte in 3 of the 6 shards (erasure coded) or in all 3 replicas (small object)
    of ``key``: fewer good copies than a repair needs. Returns the flips, to undo them."""
    volume = _volume(node, key)
    if volume.layout == "ec":
        shards = sorted(tmp_path.glob(f"d*/ec/*/{volume.volume_id}.*.shard"))
        flips = [(path, 200) for path in shards[:3]]  # inside block 0: stripe 0 is lost
    else:
        disks = {d.disk_id: d.path for d in node.tiers["hot"].disks}
        meta_size = volume.location["meta_size"]
        flips = [
            (disks[disk_id] / "seg" / f"{segment:010d}.seg", offset + 56 + meta_size)
            for disk_id, segment, offset in volume.location["replicas"]
        ]
    for path, offset in flips:
        _flip(path, offset)
    return flips


async def _read_fails(node: Node, key: str) -> None:
    volume = _volume(node, key)
    with pytest.raises(VolumeUnreadable):
        async for _chunk in node.service.read_volume(volume, 0, volume.size):
            pass


class CountingChecks:
    """Counts the checks of volumes, per volume (wraps the real check, changes nothing)."""

    def __init__(self, node: Node) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        real = node.maintenance.check_volume

        async def check(volume: VolumeRecord) -> tuple[str, str]:
            self.counts[volume.volume_id] += 1
            return await real(volume)

        node.maintenance.check_volume = check  # type: ignore[method-assign]


async def _settle(node: Node, seconds: float = 0.3) -> None:
    """Let the healer run (its loop is real; only its retry times are on the test's clock)."""
    await asyncio.sleep(seconds)


async def _ready_and_gauge(node: Node) -> tuple[int, dict[str, Any], float]:
    observer = Observer(node.meta, node.tiers, node.maintenance)
    observer.serving = True
    app = web.Application()
    app.router.add_get("/{tail:.*}", observer.handle)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/health/ready")
        ready = await response.json()
        metrics = await (await client.get("/metrics")).text()
    gauge = sample(parse_text(metrics), "stratum_heal_unrepaired_volumes")
    return response.status, ready, gauge


async def test_a_volume_that_cannot_be_repaired_waits_and_is_reported_once(
    node: Node, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stratum.maintenance")
    clock = node.clock
    assert isinstance(clock, ManualClock)
    await _fill(node)
    broken = {key: _damage_beyond_repair(node, tmp_path, key) for key in ("big0", "small0")}
    ids = {key: _volume(node, key).volume_id for key in broken}
    checks = CountingChecks(node)
    await node.maintenance.start(scheduled=False)  # heal and probe; no scheduled scrub

    def errors() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

    for key in broken:
        await _read_fails(node, key)
    await _settle(node)
    # One check each, not one per damage report its own check makes (that spun a core).
    assert dict(checks.counts) == {vid: 1 for vid in ids.values()}
    assert len(errors()) == 2 and all("could not be repaired" in e for e in errors())
    status, ready, gauge = await _ready_and_gauge(node)
    assert status == 200 and ready["status"] == "ready", ready
    assert ready["degraded"] == ["2 volume(s) could not be repaired by the healer (retrying)"]
    assert gauge == 2
    heal = node.maintenance.status()["heal"]
    assert {v["volume_id"] for v in heal["unrepaired_volumes"]} == set(ids.values())

    # Reads meet the damage again before the retry is due: nothing more is checked.
    for key in broken:
        await _read_fails(node, key)
    await _settle(node)
    assert sum(checks.counts.values()) == 2
    # Due after 30 s: one more check each, and no new ERROR line.
    clock.advance(heal_module.RETRY_FIRST)
    for key in broken:
        await _read_fails(node, key)
    await _settle(node)
    assert sum(checks.counts.values()) == 4 and len(errors()) == 2
    # The wait has doubled: 30 s more is not enough.
    clock.advance(heal_module.RETRY_FIRST)
    for key in broken:
        await _read_fails(node, key)
    await _settle(node)
    assert sum(checks.counts.values()) == 4
    # A disk that comes back online is worth a try at once.
    (tmp_path / "d5").rename(tmp_path / "d5.away")
    await node.maintenance.probe_disks()
    assert any("d5" in reason for reason in node.maintenance.degraded())
    (tmp_path / "d5.away").rename(tmp_path / "d5")
    await node.maintenance.probe_disks()
    await _settle(node)
    assert sum(checks.counts.values()) == 6 and len(errors()) == 2
    # Later, one is deleted and the other's damage undone (a disk remounted, say): when their
    # retry is due, each is reported once more, at INFO.
    await node.service.delete_object("bkt", "small0", "owner")
    for path, offset in broken["big0"]:
        _flip(path, offset)
    clock.advance(4 * heal_module.RETRY_FIRST)
    await node.maintenance.healer.heal()
    assert sum(checks.counts.values()) == 7 and len(errors()) == 2
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    after = "after 3 failed attempt(s) to repair it"
    assert f"volume {ids['big0']} is readable again, {after}" in infos
    assert f"volume {ids['small0']} was freed, {after}" in infos
    status, ready, gauge = await _ready_and_gauge(node)
    assert (status, ready, gauge) == (200, {"status": "ready"}, 0)


# ---- a scrub racing deletes and the garbage collector --------------------------------------


class StalledIO:
    """Holds every thread of the node's storage executor until released: a check stays
    in flight for as long as the test needs (a slow disk, in effect)."""

    def __init__(self, node: Node) -> None:
        self.gate = threading.Event()
        threads = node.executor._max_workers
        self.jobs = [node.executor.submit(self.gate.wait) for _ in range(threads)]

    def release(self) -> None:
        self.gate.set()
        for job in self.jobs:
            job.result()


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never: {what}")


async def test_a_volume_a_scrub_checks_is_not_freed_under_it(node: Node, tmp_path: Path) -> None:
    data = os.urandom(700_000)
    await node.service.put_object("bkt", "k", _chunks(data), PutOptions(owner_id="owner"))
    vid = _volume(node, "k").volume_id
    stalled = StalledIO(node)
    scrub = asyncio.create_task(node.maintenance.scrub())
    try:
        await _until(lambda: vid in node.service._reading, "the scrub holds the volume it checks")
        await node.service.delete_object("bkt", "k", "owner")
        assert await node.service.collect_garbage() == 0, "held: not freed"
    finally:
        stalled.release()
    figures = await scrub
    assert (figures.volumes, figures.damaged, figures.unrepaired) == (1, 0, 0), figures
    assert await node.service.collect_garbage() == 1
    assert not list(tmp_path.glob("d*/ec/*/*.shard"))


async def test_volumes_freed_after_a_scrub_listed_them_are_not_unrepaired(node: Node) -> None:
    objects = {f"o{i}": os.urandom(700_000 + i) for i in range(4)}
    for key, data in objects.items():
        await node.service.put_object("bkt", key, _chunks(data), PutOptions(owner_id="owner"))
    by_id = sorted((_volume(node, key).volume_id, key) for key in objects)  # the pass's order
    stalled = StalledIO(node)
    scrub = asyncio.create_task(node.maintenance.scrub())
    try:
        # The pass has listed every volume (its first page, read as it starts) and is
        # checking the first when the rest go.
        await _until(lambda: node.maintenance.current is not None, "the pass starts")
        await node.service.delete_objects("bkt", [(key, None) for _vid, key in by_id[1:]], "owner")
        collect = asyncio.create_task(node.service.collect_garbage())
        await asyncio.sleep(0.05)  # its deletes wait for the disks too, ahead of the next check
    finally:
        stalled.release()
    figures = await scrub
    await collect
    assert figures.unrepaired == 0 and figures.failures == [], figures
    assert (figures.volumes, figures.damaged) == (1, 0)


async def test_the_orphan_sweep_frees_only_shard_files_no_metadata_names(
    node: Node, tmp_path: Path
) -> None:
    objects = await _fill(node)
    view = node.service.head_object("bkt", "big0", "owner")
    storage_id = str(view.volume.location.get("volume_id") or view.volume.volume_id)
    shards = sorted(tmp_path.glob(f"d*/ec/*/{storage_id}.*"))
    assert len(shards) == 6
    # A crash's leftover: shard files of a volume whose record was never committed, written
    # before this start (an older id).
    orphan_id = "0" * len(storage_id)
    orphans = [s.with_name(s.name.replace(storage_id, orphan_id)) for s in shards]
    for shard, orphan in zip(shards, orphans, strict=True):
        shutil.copyfile(shard, orphan)
    assert await node.service.sweep_orphans() == 6
    assert not any(o.exists() for o in orphans) and all(s.exists() for s in shards)
    await _read_all(node, objects)
    assert await node.service.sweep_orphans() == 0
