"""What lets several server processes share one data directory: segment files appended by
more than one process, the table of reads in flight, and an LMDB map another process grew.

Real files and real processes; see tests/server/test_workers.py for whole servers.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stratum.block import segments
from stratum.block.errors import DiskWriteError
from stratum.block.segments_format import list_segments
from stratum.meta.store import MetaStore
from stratum.service.readers import ReadingTable, clear_tables, table_path, volumes_being_read
from tests.unit.test_segments import blob, make_disks, running, vid


async def test_a_primary_and_shared_stores_append_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segments, "LOCK_WAIT", 0.3)
    disks = make_disks(tmp_path, 3)
    async with running(disks, 2) as primary:
        # Before share(), the primary holds the disks alone.
        with pytest.raises(DiskWriteError, match="locked by another process"):
            async with running(disks, 2, shared=True):
                pass
        primary.share()
        async with running(disks, 2, shared=True) as worker:
            items = [(vid(), blob(n, 100 + n * 37)) for n in range(60)]
            locations = await asyncio.gather(
                *(
                    (primary if n % 2 else worker).put(v, data, {"key": f"k{n}"})
                    for n, (v, data) in enumerate(items)
                )
            )
            # Every record reads back through either process's store.
            for (_, data), loc in zip(items, locations, strict=True):
                assert await primary.get(loc) == data
                assert await worker.get(loc) == data
            # No segment file has records of both processes: each appends to its own.
            by_segment: dict[tuple[str, int], set[int]] = {}
            for n, loc in enumerate(locations):
                for replica in loc.replicas:
                    by_segment.setdefault((replica.disk_id, replica.segment), set()).add(n % 2)
            assert all(len(owners) == 1 for owners in by_segment.values()), by_segment
            # An offline tool (recovery, offline scrub) still cannot take the disks.
            with pytest.raises(DiskWriteError, match="locked by another process"):
                async with running(disks, 2):
                    pass


async def test_a_shared_store_never_appends_to_older_segments(tmp_path: Path) -> None:
    disks = make_disks(tmp_path, 1)
    async with running(disks, 1) as first:
        await first.put(vid(), b"before", {})
    before = list_segments(disks[0].seg_dir)
    async with running(disks, 1, shared=True) as worker:
        loc = await worker.put(vid(), b"after", {})
    assert loc.replicas[0].segment > max(before)


def test_reading_tables_show_what_workers_read(tmp_path: Path) -> None:
    run = tmp_path / "run"
    one, two = ReadingTable(table_path(run, 1)), ReadingTable(table_path(run, 2), slots=2)
    a, b, c = vid(), vid(), vid()
    slot_a, slot_b = one.enter(a), two.enter(b)
    slot_c = two.enter(c)
    assert two.enter(vid()) == -1  # full: that read relies on the collector's grace period
    assert volumes_being_read(run) == {a, b, c}
    one.leave(slot_a)
    two.leave(slot_c)
    assert volumes_being_read(run) == {b}
    two.leave(slot_b)
    two.leave(-1)
    assert volumes_being_read(run) == set()
    one.close()
    assert not table_path(run, 1).exists()
    clear_tables(run)
    assert list(run.iterdir()) == []


GROW = """
import sys
from pathlib import Path
from stratum.meta.store import MetaStore

store = MetaStore(Path(sys.argv[1]), map_size=1 << 20)
store.open()
for n in range(40):  # ~4 MiB of values: the 1 MiB map grows (doubles) a few times
    store.write_sync(lambda tx, n=n: tx.put("info", b"big%d" % n, bytes(100_000)))
store.close()
"""


def test_a_map_grown_by_another_process_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "meta"
    mine = MetaStore(path, map_size=1 << 20)
    mine.open()
    try:
        mine.write_sync(lambda tx: tx.put("info", b"before", b"1"))
        grown = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(GROW), str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert grown.returncode == 0, grown.stderr
        # Reads and writes here go on, on the other process's bigger map.
        assert mine.read(lambda tx: tx.get("info", b"big39")) == bytes(100_000)
        mine.write_sync(lambda tx: tx.put("info", b"after", bytes(300_000)))
        assert mine.read(lambda tx: tx.get("info", b"after")) == bytes(300_000)
    finally:
        mine.close()
