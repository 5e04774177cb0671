"""Segment compaction: what it moves and removes, and its crash points.

A real Node (LMDB, three disk directories, two copies of each small object) with small
segments so that a few hundred KiB of objects fill and seal many of them. The crash tests
run the compaction steps in a child process that kills itself (SIGKILL) between two of them,
then check, in this process, the invariants: every object written is readable with its
content, no deleted object is back, and once compaction has run again nothing is left on the
disks that the metadata does not point at.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stratum.block.segments_format import list_segments, scan_segment, segment_name
from stratum.config import Config, load_config
from stratum.meta import catalog
from stratum.node import Node
from stratum.service import errors
from stratum.service.multipart import CompletedPart
from stratum.service.objects import MULTI, PutOptions
from stratum.util.clock import ManualClock

REPO = Path(__file__).resolve().parents[2]
ROOT_ENV = {"STRATUM_ACCESS_KEY": "COMPACTIONROOT", "STRATUM_SECRET_KEY": "compaction-secret"}


def config_for(base: Path) -> Config:
    return load_config(
        overrides={
            "storage.data_dir": base / "data",
            "storage.segment_size": 32 << 10,
            "storage.small_object_threshold": 16 << 10,
            "tiers.hot.disks": [str(base / f"disk{i}") for i in range(3)],
            "tiers.hot.data_shards": 2,
            "tiers.hot.parity_shards": 1,
            "tiering.enabled": False,
        }
    )


@pytest.fixture(autouse=True)
def _root_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ROOT_ENV.items():
        monkeypatch.setenv(name, value)


async def opened(base: Path) -> Node:
    node = Node.open(config_for(base), ManualClock(1_700_000_000.0))
    await node.start(background=False)
    return node


async def closed(node: Node) -> None:
    await node.stop()
    node.close()


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def owner(node: Node) -> str:
    return node.root.user.canonical_id


KEYS = 120


async def workload(node: Node, seed: int) -> dict[str, bytes]:
    """Objects written, overwritten, deleted; returns what should be there. Most are a few
    hundred bytes: freeing them punches no whole block, so compaction has records to move."""
    rng = random.Random(seed)
    await node.service.create_bucket("b", owner(node), "us-east-1")
    want: dict[str, bytes] = {}
    for _round in range(2):
        for i in range(KEYS):
            data = rng.randbytes(rng.choice([300, 300, 700, 2000, 15000]))
            await node.service.put_object("b", f"k{i}", _body(data), PutOptions(owner(node)))
            want[f"k{i}"] = data
    for i in range(KEYS):
        if i % 3:
            await node.service.delete_object("b", f"k{i}", owner(node))
            del want[f"k{i}"]
    await node.service.collect_garbage()
    return want


async def check_contents(node: Node, want: dict[str, bytes]) -> None:
    for key, data in want.items():
        view = node.service.head_object("b", key, owner(node))
        got = b"".join(
            [c async for c in node.service.read_volume(view.volume, 0, view.record.size)]
        )
        assert got == data, key
    for i in range(KEYS):
        if f"k{i}" not in want:
            with pytest.raises(errors.NoSuchKey):
                node.service.head_object("b", f"k{i}", owner(node))


def referenced(node: Node) -> set[tuple[str, int, int]]:
    """Every segment replica the metadata points at (live volumes and queued garbage)."""
    out: set[tuple[str, int, int]] = set()
    with node.meta.reader() as tx:
        for table in ("volumes", "gc"):
            for _key, raw in tx.cursor(table):
                from stratum.meta.records import VolumeRecord

                volume = VolumeRecord.decode(bytes(raw))
                locations = [volume.location] if volume.layout == "seg" else []
                if volume.layout == MULTI:
                    locations = [p["location"] for p in volume.location["parts"]]
                    locations.append(volume.location["manifest"])
                for loc in locations:
                    if "replicas" in loc:
                        out.update((d, s, o) for d, s, o in loc["replicas"])
    return out


def on_disks(node: Node) -> set[tuple[str, int, int]]:
    """Every record a scan of the disks finds intact (what recover-metadata would see)."""
    out: set[tuple[str, int, int]] = set()
    for disk in node.tiers["hot"].disks:
        for number in list_segments(disk.seg_dir):
            for record in scan_segment(disk.seg_dir / segment_name(number)):
                if record.intact:
                    out.add((disk.disk_id, number, record.offset))
    return out


def segment_bytes(node: Node) -> int:
    return sum(
        (disk.seg_dir / segment_name(n)).stat().st_blocks * 512
        for disk in node.tiers["hot"].disks
        for n in list_segments(disk.seg_dir)
    )


def live_record_bytes(node: Node) -> int:
    usage = node.tiers["hot"].segments
    assert usage is not None
    return sum(u.live or 0 for u in usage.usage())


async def settle(node: Node, passes: int = 4) -> None:
    """Collect garbage and compact until nothing is left to do."""
    for _ in range(passes):
        await node.service.collect_garbage()
        await node.compaction.run_pass(force_walk=True)
    await node.service.collect_garbage()


async def test_compaction_moves_live_records_and_removes_emptied_segments(tmp_path: Path) -> None:
    node = await opened(tmp_path)
    try:
        want = await workload(node, seed=1)
        before = segment_bytes(node)
        first = await node.compaction.run_pass(force_walk=True)
        assert first.walks == 1 and first.removed > 0 and first.moved > 0
        await settle(node)
        await check_contents(node, want)
        # Nothing is left on the disks that the metadata does not point at, and the
        # segment files take little more than the live records (copies included).
        assert on_disks(node) == referenced(node)
        await node.compaction.run_pass(force_walk=True)
        live = live_record_bytes(node)
        assert live >= 2 * sum(len(d) for d in want.values())
        after = segment_bytes(node)
        assert after < before and after <= 2 * live, (before, after, live)
        assert node.compaction.totals.lost_races == 0
    finally:
        await closed(node)
    node = await opened(tmp_path)  # and after a restart
    try:
        await check_contents(node, want)
        assert on_disks(node) == referenced(node)
    finally:
        await closed(node)


async def test_a_move_that_lost_a_race_is_undone(tmp_path: Path) -> None:
    """A volume overwritten between the copy and the commit keeps its new content; the
    copy of the old one is freed."""
    node = await opened(tmp_path)
    try:
        want = await workload(node, seed=2)
        jobs = [j for j in await node.compaction.plan(force=True) if not j.strays_only]
        job = next(j for j in jobs if any(not r.retired for r in j.refs.values()))
        from stratum.maintenance.compaction import PassFigures, list_headers, read_records

        found = read_records(job.path, list_headers(job.path))
        moves, _strays = await node.compaction.copy(job, found)
        assert moves
        volume = next(
            v
            for k in want
            if (v := node.service.head_object("b", k, owner(node)).volume).volume_id
            == moves[0].ref.volume_id
        )
        key = volume.key
        await node.service.put_object("b", key, _body(b"newer"), PutOptions(owner(node)))
        want[key] = b"newer"
        figures = PassFigures()
        await node.compaction.commit(job, moves, figures)
        assert figures.lost_races >= 1 and figures.moved == len(moves) - figures.lost_races
        await settle(node)
        await check_contents(node, want)
        assert on_disks(node) == referenced(node)
    finally:
        await closed(node)


async def test_a_record_the_walk_missed_is_not_freed_while_its_volume_names_it(
    tmp_path: Path,
) -> None:
    """The walk pages through the metadata (no snapshot), so it can miss a volume that came
    to name a record while it ran. Such a record looks like a stray copy of a volume the
    metadata knows; it must stay, because its volume names it when read just before."""
    from stratum.maintenance.compaction import list_headers, read_records

    node = await opened(tmp_path)
    try:
        want = await workload(node, seed=7)
    finally:
        await closed(node)
    node = await opened(tmp_path)  # records written before this process: stray candidates
    try:
        jobs = [j for j in await node.compaction.plan(force=True) if not j.strays_only]
        job = next(j for j in jobs if any(not r.retired for r in j.refs.values()))
        missed = {offset for offset, ref in job.refs.items() if not ref.retired}
        for offset in missed:  # as if the walk had not seen the volumes naming them
            del job.refs[offset]
        found = read_records(job.path, list_headers(job.path))
        moves, strays = await node.compaction.copy(job, found)
        assert not moves
        assert not {r.header.offset for r in strays} & missed
        assert job.kept > 0  # left in place, so the segment is not removed either
        await settle(node)
        await check_contents(node, want)
        assert on_disks(node) == referenced(node)
    finally:
        await closed(node)


async def test_parts_of_an_upload_in_progress_stay_until_it_completes(tmp_path: Path) -> None:
    """Completing an upload copies its parts' locations unchecked: a part must not move
    before. Once completed, the part is the object's and moves like the rest."""
    node = await opened(tmp_path)
    try:
        await node.service.create_bucket("b", owner(node), "us-east-1")
        rng = random.Random(4)
        opts = PutOptions(owner(node))
        for i in range(60):  # neighbours, deleted below
            await node.service.put_object("b", f"n{i}", _body(rng.randbytes(300)), opts)
        upload = await node.multipart.create("b", "mp", opts)
        data = rng.randbytes(300)
        part = await node.multipart.upload_part("b", "mp", upload.upload_id, 1, _body(data), opts)
        for i in range(60, 120):
            await node.service.put_object("b", f"n{i}", _body(rng.randbytes(300)), opts)
        for i in range(120):
            await node.service.delete_object("b", f"n{i}", owner(node))
        await node.service.collect_garbage()

        def part_location() -> dict[str, Any]:
            volume = node.meta.read(lambda tx: catalog.get_volume(tx, part.volume_id))
            assert volume is not None
            return volume.location

        before = part_location()
        await settle(node)
        assert node.compaction.totals.segments > 0 and part_location() == before
        done = [CompletedPart(1, part.etag)]
        await node.multipart.complete("b", "mp", upload.upload_id, done, owner(node))
        await settle(node)
        view = node.service.head_object("b", "mp", owner(node))
        moved = view.volume.location["parts"][0]["location"]
        assert moved["replicas"] != before["replicas"]
        got = [c async for c in node.service.read_volume(view.volume, 0, view.record.size)]
        assert b"".join(got) == data
        assert on_disks(node) == referenced(node)
    finally:
        await closed(node)


_CRASH_CHILD = """
import asyncio, json, os, signal, sys
from pathlib import Path
from stratum.maintenance.compaction import PassFigures, list_headers, read_records
from stratum.meta import catalog
from stratum.node import Node
from tests.unit.test_compaction import config_for

async def main(base, step):
    node = Node.open(config_for(Path(base)))
    await node.start(background=False)
    jobs = [j for j in await node.compaction.plan(force=True) if not j.strays_only]
    job = next(j for j in jobs if any(not r.retired for r in j.refs.values()))
    moves, _strays = await node.compaction.copy(job, read_records(job.path, list_headers(job.path)))
    assert moves
    if step == "commit":
        await node.compaction.commit(job, moves, PassFigures())
    copies = [list(m.new) for m in moves]
    print(json.dumps({"segment": list(job.key), "copies": copies}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.parametrize("step", ["copy", "commit"])
async def test_a_kill_between_compaction_steps_loses_and_resurrects_nothing(
    tmp_path: Path, step: str
) -> None:
    """``copy``: killed after writing the new copies, before the commit (they are strays,
    in compaction output the kill left unsealed). ``commit``: killed after the commit,
    before the collector freed the old copies and the segment was removed."""
    node = await opened(tmp_path)
    try:
        want = await workload(node, seed=3)
    finally:
        await closed(node)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CRASH_CHILD,
        str(tmp_path),
        step,
        env={**os.environ, **ROOT_ENV, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(child.communicate(), 120)
    assert child.returncode == -signal.SIGKILL, out
    crashed: dict[str, Any] = json.loads(out)
    copies = {tuple(c) for c in crashed["copies"]}
    node = await opened(tmp_path)
    try:
        await check_contents(node, want)
        disk_ids = {d.disk_id for d in node.tiers["hot"].disks}
        assert {c[0] for c in copies} <= disk_ids
        if step == "copy":
            assert not copies & referenced(node) and copies <= on_disks(node)
        else:
            assert copies <= referenced(node)
        await settle(node)
        await check_contents(node, want)
        assert on_disks(node) == referenced(node)
        disk_id, number = crashed["segment"]
        seg_dir = next(d.seg_dir for d in node.tiers["hot"].disks if d.disk_id == disk_id)
        assert number not in list_segments(seg_dir)  # emptied, then removed
        if step == "copy":
            assert node.compaction.totals.strays >= len(copies)
    finally:
        await closed(node)
