"""Small-object segments: round trips, group commit, replicas, damage, torn tails, crashes.

Everything runs against real files under tmp_path; the only patch is a counting wrapper
around ``os.fdatasync``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratum.block.disk import Disk, open_disk
from stratum.block.errors import DiskWriteError, StorageError, VolumeUnreadable
from stratum.block.segments import Replica, SegLocation, SegmentStore, scan_disk
from stratum.block.segments_format import (
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    list_segments,
    scan_segment,
    segment_name,
)
from tests.unit.test_groupcommit import record_sleeps

REPO = Path(__file__).resolve().parents[2]


def make_disks(root: Path, n: int) -> list[Disk]:
    return [open_disk(root / f"disk{i}") for i in range(n)]


def vid() -> str:
    return uuid.uuid4().hex


def blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


Damage = list[tuple[SegLocation, Replica, str]]


@asynccontextmanager
async def running(
    disks: Sequence[Disk], copies: int, damage: Damage | None = None, **kw: Any
) -> AsyncIterator[SegmentStore]:
    executor = ThreadPoolExecutor(4)
    on_damage = (
        (lambda loc, rep, why: damage.append((loc, rep, why))) if damage is not None else None
    )
    store = SegmentStore(disks, copies, executor, on_damage=on_damage, **kw)
    await asyncio.to_thread(store.start)  # blocking (locks and scans the disks): not on the loop
    try:
        yield store
    finally:
        await store.close()
        executor.shutdown()


def seg_path(disks: Sequence[Disk], replica: Replica) -> Path:
    disk = next(d for d in disks if d.disk_id == replica.disk_id)
    return disk.seg_dir / segment_name(replica.segment)


def flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0xFF]))


# --- round trips ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, SegmentStore]]:
    """One store for the hypothesis examples (small segments, so rotation happens too)."""
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(4)
    disks = make_disks(tmp_path_factory.mktemp("shared"), 3)
    store = SegmentStore(disks, 2, executor, segment_size=512 << 10)
    store.start()
    yield loop, store
    loop.run_until_complete(store.close())
    loop.close()
    executor.shutdown()


SIZES = st.one_of(
    st.integers(0, 128 << 10),
    st.sampled_from([0, 1, 55, 56, 57, 4095, 4096, 4097, 65536, 128 << 10]),
)
METAS = st.dictionaries(
    st.text(max_size=12), st.one_of(st.text(max_size=30), st.integers(), st.none()), max_size=4
)


@settings(max_examples=60, deadline=None)
@given(size=SIZES, seed=st.integers(0, 2**32), meta=METAS)
def test_round_trip_any_size(
    shared: tuple[Any, SegmentStore], size: int, seed: int, meta: dict[str, Any]
) -> None:
    loop, store = shared
    data = blob(seed, size)
    volume = vid()
    loc = loop.run_until_complete(store.put(volume, data, meta))
    assert (loc.volume_id, loc.size, len(loc.replicas)) == (volume, size, 2)
    assert loop.run_until_complete(store.get(loc)) == data
    assert SegLocation.from_dict(json.loads(json.dumps(loc.to_dict()))) == loc


async def test_concurrent_puts_share_fdatasyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = os.fdatasync

    def counting(fd: int) -> None:
        nonlocal calls
        calls += 1
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    disks = make_disks(tmp_path, 3)
    async with running(disks, 3) as store:
        datas = [blob(i, 4096) for i in range(200)]
        locs = await asyncio.gather(*(store.put(vid(), d, {"i": i}) for i, d in enumerate(datas)))
        for loc, data in zip(locs, datas, strict=True):
            assert await store.get(loc) == data
    # 200 puts x 3 replicas = 600 appends; group commit turns them into a handful of syncs.
    assert 0 < calls <= 200 // 4, calls


async def test_writers_wait_for_sibling_puts_but_never_for_a_lone_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stratum.block.segments as segments

    waits = record_sleeps(monkeypatch)
    disks = make_disks(tmp_path, 3)
    async with running(disks, 3) as store:
        for i in range(20):  # one at a time: no sibling, no wait
            await store.put(vid(), blob(i, 100), {})
        assert waits == []
        await asyncio.gather(*(store.put(vid(), blob(i, 100), {}) for i in range(50)))
        assert waits and set(waits) == {segments.GATHER_DELAY}


async def test_close_finishes_queued_puts(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 2)
    async with running(disks, 2) as store:
        tasks = [asyncio.ensure_future(store.put(vid(), b"x" * i, {})) for i in range(50)]
        await asyncio.sleep(0)
        await store.close()
        locs = await asyncio.gather(*tasks)
    async with running(disks, 2) as store:
        for i, loc in enumerate(locs):
            assert await store.get(loc) == b"x" * i
    with pytest.raises(RuntimeError):
        await store.put(vid(), b"late", {})


def test_location_rejects_unknown_version() -> None:
    loc = SegLocation("0" * 32, 1, 2, 3, (Replica("a" * 32, 1, 48),))
    record = loc.to_dict()
    assert record["v"] == 1
    with pytest.raises(ValueError):
        SegLocation.from_dict({**record, "v": 99})


# --- placement ------------------------------------------------------------------------------


async def test_replicas_on_distinct_disks_round_robin(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 5)
    async with running(disks, 3) as store:
        locs = [await store.put(vid(), b"data", {}) for _ in range(20)]
    used: set[str] = set()
    for loc in locs:
        ids = [r.disk_id for r in loc.replicas]
        assert len(ids) == 3 == len(set(ids))
        used.update(ids)
    assert used == {d.disk_id for d in disks}


@pytest.mark.parametrize("n_disks", [1, 2])
async def test_fewer_disks_than_copies_use_distinct_segments(tmp_path: Path, n_disks: int) -> None:
    disks = make_disks(tmp_path, n_disks)
    async with running(disks, 3) as store:
        locs = await asyncio.gather(*(store.put(vid(), blob(i, 999), {}) for i in range(30)))
        for i, loc in enumerate(locs):
            assert len(loc.replicas) == 3
            assert len({r.disk_id for r in loc.replicas}) == n_disks
            assert len({(r.disk_id, r.segment) for r in loc.replicas}) == 3
            assert await store.get(loc) == blob(i, 999)


async def test_segments_rotate_and_scan_finds_every_record(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 1)
    async with running(disks, 1, segment_size=8192) as store:
        locs = [await store.put(vid(), blob(i, 3000), {"i": i}) for i in range(10)]
        big = await store.put(vid(), blob(99, 20000), {"i": 99})  # larger than a segment
        for i, loc in enumerate(locs):
            assert await store.get(loc) == blob(i, 3000)
        assert await store.get(big) == blob(99, 20000)
    assert len(list_segments(disks[0].seg_dir)) >= 5
    found = {(n, rec.offset): rec for n, rec in scan_disk(disks[0])}
    for i, loc in enumerate([*locs, big]):
        rep = loc.replicas[0]
        rec = found.pop((rep.segment, rep.offset))
        assert (
            rec.intact and rec.volume_id == loc.volume_id and rec.meta == {"i": i if i < 10 else 99}
        )
    assert not found


# --- damage and repair ----------------------------------------------------------------------


async def test_corrupt_replica_is_reported_and_repaired(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 3)
    damage: Damage = []
    async with running(disks, 3, damage) as store:
        data = blob(1, 5000)
        loc = await store.put(vid(), data, {"key": "k"})
        bad = loc.replicas[0]
        flip_byte(seg_path(disks, bad), bad.offset + RECORD_HEADER_SIZE + loc.meta_size + 100)
        assert await store.get(loc) == data
        assert [(d[1], "CRC" in d[2]) for d in damage] == [(bad, True)]
        fixed = await store.repair(loc)
        assert bad not in fixed.replicas and len(fixed.replicas) == 3
        assert len({r.disk_id for r in fixed.replicas}) == 3
        damage.clear()
        for order in (fixed.replicas, fixed.replicas[::-1]):
            assert await store.get(fixed.__class__(**{**fixed.__dict__, "replicas": order})) == data
        assert damage == []
        assert await store.repair(fixed) is fixed


def _keeps_pages(path: Path) -> bool:
    """tmpfs: the page cache is the storage, POSIX_FADV_DONTNEED evicts nothing."""
    kind = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True)
    return kind.stdout.strip() in ("tmpfs", "ramfs")


class _NoExecutor(ThreadPoolExecutor):
    """An executor that can be told to refuse work, to see which reads stay on the loop."""

    refuse = False

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        if self.refuse:
            raise AssertionError(f"{fn} went to the executor")
        return super().submit(fn, *args, **kwargs)


async def test_cached_record_is_read_on_the_loop_and_damage_still_found(tmp_path: Path) -> None:
    executor = _NoExecutor(2)
    damage: Damage = []
    disks = make_disks(tmp_path, 3)
    store = SegmentStore(
        disks, 3, executor, on_damage=lambda loc, r, why: damage.append((loc, r, why))
    )
    await asyncio.to_thread(store.start)  # blocking: not on the loop
    try:
        data = blob(7, 4096)
        loc = await store.put(vid(), data, {"key": "k"})
        assert await store.get(loc) == data  # a first read opens the segment for later ones
        executor.refuse = True
        for _ in range(3):
            assert await store.get(loc) == data  # page cache, preadv(RWF_NOWAIT), no thread
        # Out of the page cache: the loop must not wait for the disk, the executor reads.
        path = seg_path(disks, loc.replicas[0])
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        if not _keeps_pages(path):
            with pytest.raises(AssertionError, match="went to the executor"):
                await store.get(loc)
        executor.refuse = False
        assert await store.get(loc) == data
        # Bitrot in the cached replica: not served, the executor path reports it and reads on.
        first = loc.replicas[0]
        flip_byte(path, first.offset + RECORD_HEADER_SIZE + loc.meta_size + 10)
        assert await store.get(loc) == data
        assert [(d[1], "CRC" in d[2]) for d in damage] == [(first, True)]
    finally:
        await store.close()
        executor.shutdown()


async def test_location_pointing_at_another_record_is_caught(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 1)
    damage: Damage = []
    async with running(disks, 2, damage) as store:
        a = await store.put(vid(), b"a" * 300, {})
        b = await store.put(vid(), b"b" * 300, {})
        confused = SegLocation(
            a.volume_id, a.size, a.crc32, a.meta_size, (b.replicas[0], a.replicas[1])
        )
        assert await store.get(confused) == b"a" * 300
        assert [(d[1], d[2].endswith("holds another record")) for d in damage] == [
            (b.replicas[0], True)
        ]


async def test_removed_disk_read_repair_and_put_fallback(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 4)
    damage: Damage = []
    async with running(disks, 3, damage) as store:
        data = blob(2, 777)
        loc = await store.put(vid(), data, {})
        lost = loc.replicas[0]
        lost_disk = next(d for d in disks if d.disk_id == lost.disk_id)
        shutil.rmtree(lost_disk.path)
        assert await store.get(loc) == data
        assert damage and damage[0][1] == lost
        fixed = await store.repair(loc)
        assert lost.disk_id not in {r.disk_id for r in fixed.replicas}
        assert len({r.disk_id for r in fixed.replicas}) == 3
        # New puts avoid the dead disk (after at most a failed attempt) and stay on 3 disks.
        for i in range(8):
            put = await store.put(vid(), blob(i, 100), {})
            assert lost.disk_id not in {r.disk_id for r in put.replicas}
            assert len({r.disk_id for r in put.replicas}) == 3
        damage.clear()
        assert await store.get(fixed) == data
        assert damage == []


async def test_put_fails_naming_the_path_when_replicas_cannot_spread(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 3)
    async with running(disks, 3) as store:
        await store.put(vid(), b"before", {})
        shutil.rmtree(disks[0].path)
        with pytest.raises(DiskWriteError) as err:
            await store.put(vid(), b"after", {})
        assert str(disks[0].seg_dir) in str(err.value)
    # The replicas it did write on the other two disks are freed.
    assert {k[0] for k in store.freed_bytes()} == {disks[1].disk_id, disks[2].disk_id}
    for disk in disks[1:]:
        assert [r.meta for _n, r in scan_disk(disk)] == [{}]  # only "before" is left


async def test_all_replicas_bad_raises_storage_error(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 2)
    async with running(disks, 2) as store:
        loc = await store.put(vid(), b"precious", {})
        for rep in loc.replicas:
            flip_byte(seg_path(disks, rep), rep.offset + 10)  # header CRC fails
        with pytest.raises(VolumeUnreadable) as err:
            await store.get(loc)
        assert isinstance(err.value, StorageError)
        assert "header damaged" in str(err.value)
        with pytest.raises(VolumeUnreadable):
            await store.repair(loc)


async def test_delete_and_cancelled_put_free_their_records(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 2)
    async with running(disks, 2) as store:
        loc = await store.put(vid(), b"z" * 100, {"k": 1})
        freed = await store.delete(loc)
        assert freed == {(r.disk_id, r.segment): loc.record_size for r in loc.replicas}
        assert await store.delete(loc) == {}  # freed already: nothing more
        task = asyncio.ensure_future(store.put(vid(), b"y" * 100, {}))
        await asyncio.sleep(0)  # submitted to the writers
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = await store.put(vid(), b"after", {})  # the cancelled write was delivered
    freed_total = sum(store.freed_bytes().values())
    assert freed_total == 2 * loc.record_size + 2 * (RECORD_HEADER_SIZE + 2 + 100)
    for disk in disks:  # scans find only the record that is still live
        assert [r.volume_id for _n, r in scan_disk(disk)] == [after.volume_id]


async def test_delete_many_frees_each_record_in_one_trip(tmp_path: Path) -> None:
    """What the garbage collector uses: each location's own outcome, the space counted as
    :meth:`delete` counts it, a location freed already freeing nothing."""
    disks = make_disks(tmp_path, 2)
    async with running(disks, 2) as store:
        locs = [await store.put(vid(), bytes([n]) * 50, {}) for n in range(3)]
        kept = await store.put(vid(), b"kept", {})
        assert await store.delete_many([*locs, locs[0]]) == [None] * 4
        assert sum(store.freed_bytes().values()) == 2 * sum(loc.record_size for loc in locs)
        assert await store.get(kept) == b"kept"
    for disk in disks:
        assert [r.volume_id for _n, r in scan_disk(disk)] == [kept.volume_id]


async def test_second_store_on_same_disks_is_refused(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 1)
    async with running(disks, 1):
        other = SegmentStore(disks, 1, ThreadPoolExecutor(1))
        with pytest.raises(DiskWriteError, match="locked"):
            await asyncio.to_thread(other.start)  # waits for the lock: not on the loop


# --- torn tails and scanning ----------------------------------------------------------------


async def _fill(disks: Sequence[Disk], count: int) -> list[tuple[SegLocation, bytes]]:
    async with running(disks, 1) as store:
        out = []
        for i in range(count):
            data = blob(i, 200 + i)
            out.append((await store.put(vid(), data, {"i": i}), data))
    return out


@pytest.mark.parametrize("cut", ["in-header", "in-meta", "in-payload", "garbage", "fake-header"])
async def test_torn_tail_is_ignored_and_cut_at_start(tmp_path: Path, cut: str) -> None:
    disks = make_disks(tmp_path, 1)
    written = await _fill(disks, 6)
    path = disks[0].seg_dir / segment_name(1)
    last, _ = written[-1]
    at = last.replicas[0].offset
    if cut == "in-header":
        os.truncate(path, at + 20)
    elif cut == "in-meta":
        os.truncate(path, at + RECORD_HEADER_SIZE + 3)
    elif cut == "in-payload":
        os.truncate(path, at + last.record_size - 1)
    else:
        with path.open("ab") as f:
            if cut == "garbage":
                f.write(os.urandom(300))
            else:  # a valid-looking header for a record that never made it
                head = path.read_bytes()[at : at + RECORD_HEADER_SIZE]
                f.write(
                    head.replace(
                        at.to_bytes(8, "little"), (at + last.record_size).to_bytes(8, "little")
                    )
                )
    survivors = written if cut in ("garbage", "fake-header") else written[:-1]
    scanned = [rec.volume_id for rec in scan_segment(path)]
    assert scanned == [loc.volume_id for loc, _ in survivors]
    async with running(disks, 1) as store:
        end = survivors[-1][0].replicas[0].offset + survivors[-1][0].record_size
        assert path.stat().st_size == end  # start() cut the tail
        for loc, data in survivors:
            assert await store.get(loc) == data
        fresh = await store.put(vid(), b"after restart", {"new": True})
        assert fresh.replicas[0] == Replica(disks[0].disk_id, 1, end)
        assert await store.get(fresh) == b"after restart"
    records = list(scan_segment(path))
    assert [r.volume_id for r in records] == [loc.volume_id for loc, _ in survivors] + [
        fresh.volume_id
    ]
    assert records[-1].meta == {"new": True} and all(r.intact for r in records)


async def test_segment_left_without_header_by_a_crash_is_reused(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 1)
    written = await _fill(disks, 2)
    headerless = disks[0].seg_dir / segment_name(2)
    headerless.write_bytes(b"STRATSEG\x01")
    async with running(disks, 1) as store:
        fresh = await store.put(vid(), b"new", {})
        assert fresh.replicas[0] == Replica(disks[0].disk_id, 2, SEGMENT_HEADER_SIZE)
        for loc, data in written:
            assert await store.get(loc) == data
    assert [r.volume_id for r in scan_segment(headerless)] == [fresh.volume_id]


async def test_scan_skips_damaged_record_and_resyncs(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 1)
    written = await _fill(disks, 5)
    path = disks[0].seg_dir / segment_name(1)
    hdr_hit, payload_hit = written[1][0], written[3][0]
    flip_byte(path, hdr_hit.replicas[0].offset + 30)
    flip_byte(path, payload_hit.replicas[0].offset + payload_hit.record_size - 1)
    records = list(scan_segment(path))
    assert [r.volume_id for r in records] == [written[i][0].volume_id for i in (0, 2, 3, 4)]
    assert [r.intact for r in records] == [True, True, False, True]


async def test_scan_ignores_records_embedded_in_a_payload(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 1)
    inner = await _fill(disks, 3)
    path = disks[0].seg_dir / segment_name(1)
    image = path.read_bytes()  # a whole segment file, uploaded as an object
    async with running(disks, 1) as store:
        outer = await store.put(vid(), image, {"what": "segment image"})
        assert await store.get(outer) == image
    flip_byte(path, outer.replicas[0].offset + 5)  # the scan must resync through the image
    ids = [r.volume_id for r in scan_segment(path)]
    assert ids == [loc.volume_id for loc, _ in inner]


def test_scan_of_headerless_segment_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / segment_name(7)
    path.write_bytes(b"STRAT")
    assert list(scan_segment(path)) == []


# --- failures of the disk under a put -------------------------------------------------------

_FULL_DISK_CHILD = """
import asyncio, json, resource, signal, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from stratum.block.disk import open_disk
from stratum.block.segments import SegmentStore

async def put(store, i):
    size = 30_000 if i % 2 else 500
    try:
        loc = await store.put(f"{i:032x}", bytes([i]) * size, {"i": i})
    except Exception as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"i": i, "loc": loc.to_dict()}

async def main():
    disk = open_disk(Path(sys.argv[1]))
    store = SegmentStore([disk], 1, ThreadPoolExecutor(1))
    store.start()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
    for i in range(0, 24, 6):  # batches mixing records that fit and records that do not
        for outcome in await asyncio.gather(*(put(store, j) for j in range(i, i + 6))):
            print(json.dumps(outcome), flush=True)
    await store.close()

asyncio.run(main())
"""


async def test_write_failure_leaves_no_partial_record(tmp_path: Path) -> None:
    """Puts hitting the file size limit (EFBIG, as a full disk gives ENOSPC) fail naming the
    segment; the others succeed, and the file never keeps a partial or unacknowledged record."""
    disk = open_disk(tmp_path / "disk")
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _FULL_DISK_CHILD,
        str(disk.path),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(child.communicate(), 30)
    assert child.returncode == 0
    outcomes = [json.loads(line) for line in stdout.decode().splitlines()]
    acked = {o["i"]: SegLocation.from_dict(o["loc"]) for o in outcomes if "loc" in o}
    errors = [o for o in outcomes if "error" in o]
    assert errors and len(acked) >= 3, outcomes
    path = disk.seg_dir / segment_name(1)
    for error in errors:
        assert error["error"] == "DiskWriteError" and str(path) in error["message"]
    records = list(scan_segment(path))
    assert {r.volume_id for r in records} == {loc.volume_id for loc in acked.values()}
    assert path.stat().st_size == max(r.header.end for r in records)
    async with running([disk], 1) as store:
        for i, loc in acked.items():
            assert await store.get(loc) == bytes([i]) * loc.size


# --- crashes --------------------------------------------------------------------------------

_CRASH_CHILD = """
import asyncio, json, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from stratum.block.disk import open_disk
from stratum.block.segments import SegmentStore

def payload(n):
    return n.to_bytes(8, "little") * (n % 3000)

async def main():
    base, log_path, *paths = sys.argv[1:]
    disks = [open_disk(Path(p)) for p in paths]
    store = SegmentStore(disks, 2, ThreadPoolExecutor(2), segment_size=128 << 10)
    store.start()
    log = open(log_path, "a", buffering=1)
    async def worker(w):
        n = int(base) + w
        while True:
            loc = await store.put(f"{n:032x}", payload(n), {"n": n})
            log.write(json.dumps({"n": n, "loc": loc.to_dict()}) + "\\n")
            n += 8
    await asyncio.gather(*(worker(w) for w in range(8)))

asyncio.run(main())
"""


@pytest.mark.slow
async def test_sigkill_never_loses_an_acknowledged_put(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 3)
    log_path = tmp_path / "acks.jsonl"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for round_no in range(10):
        before = log_path.stat().st_size if log_path.exists() else 0
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CRASH_CHILD,
            str(round_no * 10**6),
            str(log_path),
            *(str(d.path) for d in disks),
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        deadline = time.monotonic() + 20
        while (
            not log_path.exists() or log_path.stat().st_size == before
        ) and child.returncode is None:
            assert time.monotonic() < deadline, "the child never acknowledged a put"
            await asyncio.sleep(0.005)
        await asyncio.sleep(rng.uniform(0, 0.2))
        child.send_signal(signal.SIGKILL)
        await child.wait()
        assert child.returncode == -signal.SIGKILL, f"child died by itself (seed {seed})"
        acked = [
            json.loads(line)
            for line in log_path.read_text().splitlines(keepends=True)
            if line.endswith("\n")
        ]
        async with running(disks, 2) as store:
            for ack in acked:
                n = ack["n"]
                data = await store.get(SegLocation.from_dict(ack["loc"]))
                assert data == n.to_bytes(8, "little") * (n % 3000), f"seed {seed}"
            assert await store.get(await store.put(vid(), b"alive", {})) == b"alive"
    assert len(acked) > 10 * 8

    def scanned() -> set[str]:  # reads every segment: in a thread, not on the loop
        return {rec.volume_id for d in disks for _n, rec in scan_disk(d) if rec.intact}

    volumes = await asyncio.to_thread(scanned)
    assert {f"{a['n']:032x}" for a in acked} <= volumes
