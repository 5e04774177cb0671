"""The tier engine on a real node with hot and warm disks, months on an injected clock."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratum.config import load_config
from stratum.meta import catalog
from stratum.meta.records import ObjectRecord, VolumeRecord
from stratum.meta.store import Tx
from stratum.node import Node
from stratum.service.objects import PutOptions
from stratum.tiering.decisions import read_decisions
from stratum.tiering.policy import Decision, Usage
from stratum.util.clock import ManualClock
from stratum.util.loopwatch import LoopWatchdog, Stall

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


RECORDS = 100_000
# What a pass may hold at once: a page of raw volume records (PAGE of them, a few hundred
# bytes each), a slice of them decoded with their object records, the watermark candidates
# (a few hundred bytes each; here only 3 can be needed) and the buffers of a move. Whatever
# the number of volumes: about 1 MiB here. A pass that kept every record, decoded with its
# object record, would need over 200 MiB here (about 2 KiB a volume, even for these).
PASS_MEMORY_BOUND = 16 << 20
# A step of the pass decides a slice of 50 volumes: about a millisecond, a few under
# tracemalloc (which this test runs it under); the bound leaves room for a loaded machine.
LOOP_STEP_BOUND = 0.05


async def _fill_metadata(node: Node, count: int, *, read_at: float) -> None:
    """``count`` objects of 10 bytes on the hot tier, straight into the metadata store (no
    data: the pass only reads records), all read at ``read_at``."""

    def write(start: int, tx: Tx) -> None:
        for i in range(start, min(start + 10_000, count)):
            volume_id = f"fill{i:012d}"
            volume = VolumeRecord(
                volume_id, "hot", "seg", {"segment": "none"}, 10, "0" * 32, read_at,
                last_access=read_at, access_count=1, bucket="bkt", key=f"fill/{i:06d}",
            )  # fmt: skip
            catalog.put_volume(tx, volume)
            record = ObjectRecord(volume.key, volume_id, 10, '"etag"', read_at)
            catalog.put_object(tx, "bkt", record)

    for start in range(0, count, 10_000):
        await node.meta.write(functools.partial(write, start))


async def test_a_pass_over_100000_volumes_holds_neither_the_records_nor_the_loop(
    node: Node,
) -> None:
    """A pass walks the volumes a page at a time, off the event loop, keeping only the
    watermark candidates it can need: memory does not grow with the store, no loop step
    takes more than a few tens of milliseconds, and rule 4 still finds the least recently
    read volumes among all of them."""
    for i in range(3):
        await _put(node, f"coldest{i}", os.urandom(200_000))
    _clock(node).advance(60)
    await _fill_metadata(node, RECORDS, read_at=_clock(node).now())
    # Hot over its high watermark by exactly the three coldest: 1.6 MB used of 1.6 MB, and
    # 0.6 MB must leave to be under the low watermark (70 %).
    used = 3 * 200_000 + RECORDS * 10
    node.tiering._capacity = lambda tier: (
        Usage(used, 1_600_000) if tier == "hot" else Usage(1, 100_000_000)
    )

    stalls: list[Stall] = []
    watchdog = LoopWatchdog(LOOP_STEP_BOUND, stalls.append)
    watchdog.start(asyncio.get_running_loop())
    await asyncio.to_thread(tracemalloc.start)  # (stopping frees every trace: in a thread)
    try:
        before = tracemalloc.get_traced_memory()[0]
        report = await node.tiering.run_pass()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        watchdog.stop()
        await asyncio.to_thread(tracemalloc.stop)
    assert stalls == [], f"steps of the pass held the event loop: {stalls}"
    assert report.volumes == RECORDS + 3
    assert sorted(m["volume_id"] for m in report.moves) == sorted(
        node.service.head_object("bkt", f"coldest{i}", "owner").volume.volume_id for i in range(3)
    )
    assert all(m["rule"] == "watermark" and m["to"] == "warm" for m in report.moves)
    assert peak < PASS_MEMORY_BOUND, f"a pass over {RECORDS} volumes peaked at {peak >> 20} MiB"


async def test_scheduled_passes_leave_the_cpu_to_serving_unless_nudged(node: Node) -> None:
    """A scheduled pass waits ten times as long as the last took (minutes at millions of
    objects); a pin's nudge does not wait."""
    engine = node.tiering
    await engine._scheduled_pass()
    first = engine._pass_ended
    assert first > float("-inf")
    engine._pass_took = 1000.0  # as if the last pass had taken 1000 s
    await engine._scheduled_pass()
    assert engine._pass_ended == first  # not within 10,000 s of it
    engine.nudge()  # a pin was set
    await engine._scheduled_pass()
    assert engine._pass_ended > first
