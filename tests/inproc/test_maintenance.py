"""Scrub, heal and disk states on a real node with six disk directories."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratum.config import load_config
from stratum.meta import catalog
from stratum.node import Node
from stratum.service import errors
from stratum.service.objects import PutOptions
from stratum.util.clock import ManualClock


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
