"""Giving segment space back: records freed in place, sealed segments, the compaction lane.

Real files under tmp_path (the filesystem the tests run on must punch holes: ext4, xfs,
btrfs and tmpfs do).
"""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from stratum.block.errors import StorageError
from stratum.block.segments import SegLocation
from stratum.block.segments_format import (
    FLAG_COMPACTED,
    FLAG_SEALED,
    FREE_BLOCK,
    RECORD_HEADER_SIZE,
    encode_segment_header,
    list_segments,
    looks_freed,
    read_segment_header,
    scan_segment,
    segment_name,
)
from stratum.maintenance.recovery_disks import PoolDisk
from stratum.maintenance.recovery_scan import scan_disk as recovery_scan
from tests.unit.test_segments import blob, make_disks, running, seg_path, vid


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


async def test_delete_gives_the_blocks_back_at_once(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 1)
    async with running(disks, 1) as store:
        keep = await store.put(vid(), blob(1, 3000), {"k": "before"})
        gone = await store.put(vid(), blob(2, 100_000), {"k": "gone"})
        after = await store.put(vid(), blob(3, 3000), {"k": "after"})
        path = seg_path(disks, gone.replicas[0])
        os.fsync(os.open(path, os.O_RDONLY))
        before = allocated(path)
        assert await store.delete(gone) == {(disks[0].disk_id, 1): gone.record_size}
        # Everything but the two blocks it shares with its neighbours comes back.
        assert before - allocated(path) >= gone.record_size - 2 * FREE_BLOCK
        assert path.stat().st_size == after.replicas[0].offset + after.record_size
        assert await store.get(keep) == blob(1, 3000)
        assert await store.get(after) == blob(3, 3000)
    assert [r.meta for r in scan_segment(path)] == [{"k": "before"}, {"k": "after"}]


async def test_the_last_record_freed_in_a_block_frees_the_block(tmp_path: Path) -> None:
    """Records of a few hundred bytes share blocks: each free zeroes its own bytes, and the
    one that leaves a block all zeros deallocates it, whatever the order of the frees."""
    disks = make_disks(tmp_path, 1)
    async with running(disks, 1) as store:
        locs = [await store.put(vid(), blob(i, 700), {"i": i}) for i in range(200)]
        path = seg_path(disks, locs[0].replicas[0])
        full = allocated(path)
        order = list(range(200))
        random.Random(5).shuffle(order)
        for i in order:
            await store.delete(locs[i])
        # Left: the header's block, the partial last one (the file may still grow there), and
        # whatever the filesystem keeps for itself (ext4: a block of its extent tree).
        assert full >= 140_000 and allocated(path) <= 3 * FREE_BLOCK
        assert list(scan_segment(path)) == []


async def test_a_location_naming_another_record_frees_nothing(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 1)
    async with running(disks, 1) as store:
        loc = await store.put(vid(), blob(1, 9000), {})
        for wrong in (
            SegLocation(vid(), loc.size, loc.crc32, loc.meta_size, loc.replicas),
            SegLocation(loc.volume_id, loc.size, loc.crc32 ^ 1, loc.meta_size, loc.replicas),
        ):
            assert await store.delete(wrong) == {}
        assert await store.get(loc) == blob(1, 9000)


async def test_records_of_failed_puts_are_freed(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 3)
    async with running(disks, 3) as store:
        (disks[0].seg_dir / segment_name(1)).parent.rename(disks[0].path / "gone")
        for i in range(3):  # whichever disk comes first, the other two copies were written
            with contextlib.suppress(StorageError):
                await store.put(vid(), blob(i, 5000), {"i": i})
    freed = store.freed_bytes()
    assert freed and all(disk_id != disks[0].disk_id for disk_id, _n in freed)
    for disk in disks[1:]:
        for number in list_segments(disk.seg_dir):
            assert list(scan_segment(disk.seg_dir / segment_name(number))) == []


async def test_full_segments_are_sealed_and_never_appended_to_again(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 1)
    async with running(disks, 1, segment_size=64 << 10) as store:
        for i in range(30):
            await store.put(vid(), blob(i, 9000), {"i": i})
        usage = {u.file.number: u for u in store.usage()}
        numbers = sorted(usage)
        assert len(numbers) >= 4
        for number in numbers[:-1]:  # rotated: sealed once their last records were synced
            assert usage[number].sealed and usage[number].file.sealed
            assert usage[number].written_before == 0  # all written by this store
        assert not usage[numbers[-1]].sealed
    async with running(disks, 1, segment_size=64 << 10) as store:
        fresh = await store.put(vid(), b"after restart", {})
        # The open segment of the last run is appended to again, a sealed one never.
        assert fresh.replicas[0].segment == numbers[-1]
        usage = {u.file.number: u for u in store.usage()}
        assert usage[numbers[-1]].written_before == fresh.replicas[0].offset
        assert not usage[numbers[-1]].sealed
        assert all(usage[n].sealed for n in numbers[:-1])


async def test_segments_that_existed_at_start_are_sealed_unless_appended_to(
    tmp_path: Path,
) -> None:
    """A crash can lose a seal (it is not synced): every segment the first process finds at
    start and does not append to counts as sealed."""
    disks = make_disks(tmp_path, 1)
    async with running(disks, 1, segment_size=16 << 10) as store:
        for i in range(3):
            await store.put(vid(), blob(i, 9000), {"i": i})
    first, newest = disks[0].seg_dir / segment_name(1), disks[0].seg_dir / segment_name(3)
    assert read_segment_header(first).flags == FLAG_SEALED
    with first.open("r+b") as f:  # as if the seal had not reached the disk
        f.write(encode_segment_header(disks[0].disk_id, 1))
    async with running(disks, 1, segment_size=16 << 10) as store:
        usage = {u.file.number: u for u in store.usage()}
        assert usage[1].sealed and not usage[1].file.sealed
        assert usage[1].written_before == first.stat().st_size
        assert not usage[3].sealed  # the newest: this store may append to it again
        assert usage[3].written_before == newest.stat().st_size


async def test_relocated_records_go_to_a_compaction_segment_sealed_at_close(
    tmp_path: Path,
) -> None:
    disks = make_disks(tmp_path, 2)
    async with running(disks, 2) as store:
        loc = await store.put(vid(), blob(1, 4000), {"k": "v"})
        old = loc.replicas[0]
        raw = seg_path(disks, old).read_bytes()[old.offset : old.offset + loc.record_size]
        meta = raw[RECORD_HEADER_SIZE : RECORD_HEADER_SIZE + loc.meta_size]
        new = await store.relocate(loc, old, meta, blob(1, 4000))
        assert new.disk_id == old.disk_id and new.segment != old.segment
        moved = SegLocation(loc.volume_id, loc.size, loc.crc32, loc.meta_size, (new,))
        assert await store.get(moved) == blob(1, 4000)
        header = read_segment_header(seg_path(disks, new))
        assert header.flags == FLAG_COMPACTED
    assert read_segment_header(seg_path(disks, new)).flags == FLAG_COMPACTED | FLAG_SEALED


async def test_remove_segment_refuses_one_being_written(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 1)
    async with running(disks, 1) as store:
        loc = await store.put(vid(), b"data", {})
        try:
            await store.remove_segment(disks[0].disk_id, loc.replicas[0].segment)
        except ValueError as exc:
            assert "still being written" in str(exc)
        else:
            raise AssertionError("removed the segment being written")
        assert await store.get(loc) == b"data"


@given(st.binary(min_size=1, max_size=3 * FREE_BLOCK), st.integers(0, FREE_BLOCK - 1))
def test_looks_freed_only_with_zeros_where_a_hole_would_be(body: bytes, at: int) -> None:
    assert looks_freed(bytes(len(body)), at)
    first = -at % FREE_BLOCK
    holds_block = any(
        body[i : i + FREE_BLOCK] == bytes(FREE_BLOCK)
        for i in range(first, len(body) - FREE_BLOCK + 1, FREE_BLOCK)
    )
    assert looks_freed(body, at) == (not body.strip(b"\0") or holds_block)


async def test_recovery_skips_a_freed_record_whose_header_survived(tmp_path: Path) -> None:
    """A crash between a hole's deallocation and the zeroing of the partial block holding
    the header leaves a valid header over zeros: garbage, not damage."""
    disks = make_disks(tmp_path, 1)
    async with running(disks, 1) as store:
        gone = await store.put(vid(), blob(1, 20_000), {"bucket": "b", "key": "gone"})
        kept = await store.put(vid(), blob(2, 20_000), {"bucket": "b", "key": "kept"})
    path = seg_path(disks, gone.replicas[0])
    body_at = gone.replicas[0].offset + RECORD_HEADER_SIZE
    with path.open("r+b") as f:
        f.seek(body_at)
        f.write(bytes(gone.meta_size + gone.size))
    records = list(scan_segment(path))
    assert [(r.intact, r.freed) for r in records] == [(False, True), (True, False)]
    pool_disk = PoolDisk("hot", disks[0].path, disks[0].disk_id)
    scanned = recovery_scan(pool_disk)
    assert [c.volume_id for c in scanned.copies] == [kept.volume_id]
