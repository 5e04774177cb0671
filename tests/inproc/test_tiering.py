"""The tier engine on a real node with hot and warm disks, months on an injected clock."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratum.config import load_config
from stratum.meta import catalog
from stratum.node import Node
from stratum.service.objects import PutOptions
from stratum.tiering.decisions import read_decisions
from stratum.tiering.policy import Decision, Usage
from stratum.util.clock import ManualClock

DAY = 86400.0


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = load_config(
        overrides={
            "storage.data_dir": tmp_path / "data",
            "tiers.hot.disks": [tmp_path / f"h{i}" for i in range(3)],
            "tiers.warm.disks": [tmp_path / f"w{i}" for i in range(3)],
            "tiers.hot.data_shards": 2,
            "tiers.hot.parity_shards": 1,
            "tiers.warm.data_shards": 2,
            "tiers.warm.parity_shards": 1,
        }
    )
    n = Node.open(config, ManualClock(1_800_000_000.0))
    # The tiers are directories on the host's filesystem: its fill level (the machine's, not
    # the test's) would decide watermark moves and promotions. Pools nearly empty instead;
    # the watermark test sets its own.
    n.tiering._capacity = lambda tier: Usage(used=1, capacity=100)
    await n.service.start()
    await n.service.create_bucket("bkt", "owner", "us-east-1")
    yield n
    await n.service.stop()
    for tier in n.tiers.values():
        await tier.close()
    n.close()


async def _put(node: Node, key: str, data: bytes, storage_class: str = "") -> None:
    opts = PutOptions(owner_id="owner", storage_class=storage_class)
    await node.service.put_object("bkt", key, _chunks(data), opts)


async def _get(node: Node, key: str) -> tuple[str, bytes]:
    view = node.service.head_object("bkt", key, "owner")
    node.service.record_access(view.volume.volume_id)
    data = b"".join([c async for c in node.service.read_volume(view.volume, 0, view.record.size)])
    return view.volume.tier, data


def _clock(node: Node) -> ManualClock:
    assert isinstance(node.clock, ManualClock)
    return node.clock


async def test_idle_objects_move_down_and_reads_bring_them_back(node: Node) -> None:
    big, small = os.urandom(500_000), os.urandom(2_000)
    await _put(node, "big", big)
    await _put(node, "small", small)
    engine = node.tiering
    assert (await engine.run_pass()).moved == 0
    _clock(node).advance(6 * DAY)
    assert (await engine.run_pass()).moved == 0, "not idle long enough"
    _clock(node).advance(2 * DAY)
    report = await engine.run_pass()
    assert report.moved == 2
    for key, data in (("big", big), ("small", small)):
        tier, got = await _get(node, key)
        assert (tier, got) == ("warm", data)
    explained = engine.explain("bkt", "big")
    assert explained["tier"] == "warm" and explained["placed_by"]["rule"] == "idle"
    assert explained["placed_by"]["inputs"]["idle_seconds"] >= 7 * DAY
    # three reads within a day promote it back
    for _ in range(2):
        await _get(node, "big")
    await node.service.flush_access()
    await engine.run_pass()
    assert node.service.head_object("bkt", "big", "owner").volume.tier == "hot"
    log = node.meta.read(lambda tx: read_decisions(tx, bucket="bkt", key="big"))
    assert [d["rule"] for d in log] == ["promote", "idle"]
    # the old copies are collected and the data stays readable
    await node.service.collect_garbage()
    assert (await _get(node, "big"))[1] == big


async def test_pin_moves_within_a_pass_and_holds(node: Node) -> None:
    data = os.urandom(300_000)
    await _put(node, "pinned", data, storage_class="STANDARD_IA")
    await node.tiering.run_pass()
    assert node.service.head_object("bkt", "pinned", "owner").volume.tier == "warm"
    for _ in range(5):
        await _get(node, "pinned")
    await node.service.flush_access()
    await node.tiering.run_pass()
    view = node.service.head_object("bkt", "pinned", "owner")
    assert view.volume.tier == "warm", "a pin wins over promotion"
    assert node.tiering.explain("bkt", "pinned")["pin"] == "warm"


async def test_watermark_demotes_coldest_first(node: Node) -> None:
    for i in range(4):
        await _put(node, f"o{i}", os.urandom(200_000))
        _clock(node).advance(60)
    full = {"hot": Usage(used=95, capacity=100), "warm": Usage(used=10, capacity=100)}
    sizes = 200_000 * 4
    node.tiering._capacity = lambda tier: (
        Usage(sizes, int(sizes / 0.9)) if tier == "hot" else full[tier]
    )
    report = await node.tiering.run_pass()
    moved = [m for m in report.moves if m["rule"] == "watermark"]
    assert moved, "over the high watermark, something must move"
    tiers = [node.service.head_object("bkt", f"o{i}", "owner").volume.tier for i in range(4)]
    assert tiers[0] == "warm" and tiers[-1] == "hot", "least recently read first"


@pytest.mark.parametrize("step", ["write", "switch"])
async def test_a_failure_at_any_mover_step_leaves_one_readable_copy(
    node: Node, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(400_000)
    await _put(node, "k", data)
    view = node.service.head_object("bkt", "k", "owner")
    mover = node.tiering.mover
    if step == "write":

        async def broken_write(*args: object, **kwargs: object) -> None:
            raise OSError("disk on fire")

        monkeypatch.setattr(mover, "_write", broken_write)
    else:
        # The key is overwritten between the copy and the switch: the switch must not win.
        real_write = mover._write

        async def racing_write(*args: object, **kwargs: object) -> object:
            result = await real_write(*args, **kwargs)  # type: ignore[arg-type]
            await _put(node, "k", b"newer")
            return result

        monkeypatch.setattr(mover, "_write", racing_write)
    ok = await mover.move(view.volume, Decision("warm", "idle", {}))
    assert not ok
    await node.service.collect_garbage()
    expected = data if step == "write" else b"newer"
    tier, got = await _get(node, "k")
    assert got == expected and tier == "hot"
    assert not list(Path(node.tiers["warm"].disks[0].path).glob("ec/*/*.shard"))


async def test_explain_names_the_next_move(node: Node) -> None:
    await _put(node, "e", os.urandom(150_000))
    explained = node.tiering.explain("bkt", "e")
    assert explained["tier"] == "hot"
    nxt = explained["next_move"]
    assert nxt["to"] == "warm" and nxt["rule"] == "idle"
    view = node.service.head_object("bkt", "e", "owner")
    assert nxt["at"] == pytest.approx(view.volume.created + 7 * DAY)


def test_records_keep_new_fields_optional() -> None:
    volume = catalog.VolumeRecord("v", "hot", "seg", {}, 1, "00", 1.0)
    assert dataclasses.replace(volume).placed == {}
