"""Metadata backups leave offline disks alone (a failed zpool can block any I/O on it), a
disk that comes back online gets the copy it missed, and the copies to the other disks are
written in synced stretches with pauses."""

from __future__ import annotations

import concurrent.futures
import math
import os
from pathlib import Path

import pytest

from stratum.maintenance import backups
from stratum.maintenance.backups import BACKUP_DIR, MetaBackup, find_backups, write_backups
from stratum.meta.store import MetaStore
from stratum.util.clock import ManualClock


def _disks(tmp_path: Path, n: int) -> list[Path]:
    disks = [tmp_path / f"d{i}" for i in range(n)]
    for disk in disks:
        disk.mkdir()
        (disk / "stratum-disk.json").write_text("{}")
    return disks


def test_an_offline_disk_is_not_touched(tmp_path: Path, store: MetaStore) -> None:
    disks = _disks(tmp_path, 3)
    result = write_backups(store, disks, 100.0, 1, {disks[1]: "offline: pool SUSPENDED"})
    assert result.written == (disks[0], disks[2])
    assert result.offline == {str(disks[1]): "offline: pool SUSPENDED"}
    assert not result.failed, "an offline disk is not a failed backup"
    assert sorted(p.name for p in disks[1].iterdir()) == ["stratum-disk.json"]


async def test_a_disk_back_online_gets_the_copy_it_missed(tmp_path: Path, store: MetaStore) -> None:
    disks = _disks(tmp_path, 2)
    states = {disks[0]: "online", disks[1]: "offline: directory missing"}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        clock = ManualClock(50.0)
        backup = MetaBackup(
            store, disks, clock, interval=3600, executor=pool, disk_state=states.__getitem__
        )
        first = await backup.backup_now()
        assert first.written == (disks[0],) and str(disks[1]) in first.offline
        assert not (disks[1] / BACKUP_DIR).exists()
        assert (await backup.backup_now()).skipped, "nothing written, every online disk has it"
        states[disks[1]] = "online"
        again = await backup.backup_now()  # nothing written since, but d1 has no copy yet
        assert not again.skipped and set(again.written) == set(disks)
        assert (await backup.backup_now()).skipped
    assert [c.path.parent for c in find_backups(disks)] == disks


async def test_a_restart_keeps_the_schedule_of_the_copies_on_the_disks(
    tmp_path: Path, store: MetaStore
) -> None:
    """Every disk holding a copy younger than the interval: the restarted server's first copy
    is due an interval after the oldest of them, not 10 s after start; one disk without a
    copy: soon, as before."""
    disks = _disks(tmp_path, 2)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        clock = ManualClock(1000.0)
        write_backups(store, disks, clock.now(), 1, {})
        clock.advance(600)
        restarted = MetaBackup(store, disks, clock, interval=3600, executor=pool, first_delay=0)
        await restarted.start()
        try:
            assert restarted._due == 1000.0 + 3600
        finally:
            await restarted.stop()
        clock.advance(3600)  # past it: a copy at once
        late = MetaBackup(store, disks, clock, interval=3600, executor=pool, first_delay=0)
        await late.start()
        await late.stop()
        assert late._due == -math.inf
        (tmp_path / "more").mkdir()
        fresh = _disks(tmp_path / "more", 1)
        partial = MetaBackup(store, [*disks, *fresh], clock, interval=3600, executor=pool)
        await partial.start()
        await partial.stop()
        assert partial._due == -math.inf


@pytest.mark.parametrize("size", [0, 1, 3 * 4096, 3 * 4096 + 17])
def test_a_paced_copy_is_exact_and_pauses_after_each_synced_stretch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(backups, "SYNC_EVERY", 4096)
    monkeypatch.setattr(backups, "COPY_CHUNK", 1024)
    data = os.urandom(size)
    (tmp_path / "src").write_bytes(data)
    synced: list[int] = []
    real_sync = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        real_sync(fd)

    monkeypatch.setattr(backups.os, "fdatasync", fdatasync)
    pauses: list[float] = []
    backups.paced_copy(tmp_path / "src", tmp_path / "dst", pauses.append)
    assert (tmp_path / "dst").read_bytes() == data
    # a sync after every full stretch and one at the end; a pause after every full stretch
    assert synced == sorted(synced) and synced[-1] == size
    assert len(pauses) == size // 4096 and all(p >= 0 for p in pauses)
