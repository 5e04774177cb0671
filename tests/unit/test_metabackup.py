"""Metadata backups go to as many disks as the data needs to survive, the same ones each run,
spread over the tiers; they leave offline disks alone (a failed zpool can block any I/O on it)
and put the copy on another disk instead; copies on disks no longer chosen are removed, never
the last one; a disk that comes back online gets the copy it missed, and the copies to the
other disks are written in synced stretches with pauses."""

from __future__ import annotations

import concurrent.futures
import math
import os
from pathlib import Path

import pytest

from stratum.maintenance import backups
from stratum.maintenance.backups import (
    BACKUP_DIR,
    TMP_PREFIX,
    MetaBackup,
    backup_copies,
    find_backups,
    write_backups,
)
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
        # Copies wanted on two disks of three: the two that have them keep the schedule.
        again = ManualClock(1600.0)
        two = MetaBackup(store, [*fresh, *disks], again, interval=3600, executor=pool, copies=2)
        await two.start()
        await two.stop()
        assert two._due == 1000.0 + 3600


def test_copies_default_to_one_more_than_the_tiers_parity() -> None:
    assert backup_copies(0, [2], 6) == 3  # 4+2: two disks lost still leave one copy
    assert backup_copies(0, [1, 2], 9) == 3  # the largest parity of the tiers
    assert backup_copies(0, [2], 1) == 1  # never more than the disks
    assert backup_copies(0, [0], 4) == 1
    assert backup_copies(5, [2], 6) == 5  # configured
    assert backup_copies(9, [2], 6) == 6


def _holders(disks: list[Path]) -> list[Path]:
    """The disks holding the newest copy."""
    copies = find_backups(disks)
    return [c.path.parent for c in copies if c.created == copies[0].created]


def _block(disk: Path, created: float) -> None:
    """Make the copy to ``disk`` at ``created`` fail: a file where its directory would go."""
    (disk / f"{TMP_PREFIX}{int(created * 1000)}").write_text("in the way")


async def test_the_same_disks_are_refreshed_and_an_offline_one_is_replaced(
    tmp_path: Path, store: MetaStore
) -> None:
    hot0, hot1, warm0, warm1 = disks = _disks(tmp_path, 4)
    tier_of = {hot0: "hot", hot1: "hot", warm0: "warm", warm1: "warm"}
    states = dict.fromkeys(disks, "online")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        clock = ManualClock(50.0)
        backup = MetaBackup(
            store, disks, clock, interval=3600, executor=pool, copies=2, tier_of=tier_of,
            disk_state=states.__getitem__,
        )  # fmt: skip
        first = await backup.backup_now()
        assert first.written == (hot0, warm0), "one copy in each tier"
        assert (await backup.backup_now()).skipped, "nothing written, the chosen disks have it"
        for _ in range(2):
            await store.write(lambda tx: tx.put("info", b"x", os.urandom(4)))
            clock.advance(3600)
            assert (await backup.backup_now()).written == (hot0, warm0), "the same disks"
        states[warm0] = "offline: pool SUSPENDED"
        clock.advance(60)  # nothing written since, but warm0 no longer holds a copy we can use
        assert (await backup.backup_now()).written == (hot0, warm1), "warm1 replaces warm0"
        assert _holders(disks) == [hot0, warm1]
        assert (warm0 / BACKUP_DIR).exists(), "an offline disk is not touched, not even emptied"
        states[warm0] = "online"
        await store.write(lambda tx: tx.put("info", b"x", b"again"))
        clock.advance(3600)
        back = await backup.backup_now()
        assert back.written == (hot0, warm1), "the disks with the newest copy stay chosen"
        assert back.removed == (warm0,)
        # a copy that fails goes to the next disk in the order instead (fixed before the run)
        await store.write(lambda tx: tx.put("info", b"x", b"once more"))
        clock.advance(3600)
        _block(warm1, clock.now())
        moved = await backup.backup_now()
        assert moved.written == (hot0, hot1) and str(warm1) in moved.failed
        assert moved.removed == (warm1,)
    assert _holders(disks) == [hot0, hot1]
    assert {c.path.parent for c in find_backups(disks)} == {hot0, hot1}


async def test_copies_on_disks_no_longer_chosen_are_removed(
    tmp_path: Path, store: MetaStore
) -> None:
    """A store that kept a copy on every disk (or a lowered metadata_backup_copies): the next
    run keeps two of them fresh and removes the rest, leftovers of crashed runs included."""
    disks = _disks(tmp_path, 5)
    write_backups(store, disks, 100.0, 1)
    (disks[4] / f"{TMP_PREFIX}99").mkdir()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        clock = ManualClock(200.0)
        backup = MetaBackup(store, disks, clock, interval=3600, executor=pool, copies=2)
        result = await backup.backup_now()
    assert result.written == tuple(disks[:2]) and result.removed == tuple(disks[2:])
    for disk in disks[2:]:
        assert sorted(p.name for p in disk.iterdir()) == ["stratum-disk.json"]
    assert [c.created for c in find_backups(disks)] == [200.0, 200.0]


async def test_the_last_copies_are_kept_when_a_run_writes_fewer_than_wanted(
    tmp_path: Path, store: MetaStore
) -> None:
    disks = _disks(tmp_path, 3)
    write_backups(store, disks, 100.0, 1)
    clock = ManualClock(200.0)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        backup = MetaBackup(store, disks, clock, interval=3600, executor=pool, copies=2)
        for disk in disks:
            _block(disk, 200.0)
        nothing = await backup.backup_now()
        assert nothing.written == () and nothing.removed == ()
        assert [c.created for c in find_backups(disks)] == [100.0] * 3, "nothing written"
        clock.advance(10)
        for disk in disks[1:]:
            _block(disk, 210.0)
        short = await backup.backup_now()
        assert short.written == (disks[0],) and short.removed == ()
        assert [c.created for c in find_backups(disks)] == [210.0, 100.0, 100.0]
        assert not (await backup.backup_now()).skipped, "one copy of two: tried again"


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


def test_a_paced_copy_gives_way_to_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half of the disk's time while no request arrives, a tenth while they do."""
    from stratum.util.pacing import Ledger, Pacer

    monkeypatch.setattr(backups, "SYNC_EVERY", 4096)
    monkeypatch.setattr(backups, "COPY_CHUNK", 4096)
    (tmp_path / "src").write_bytes(os.urandom(4 * 4096))
    clock, requests = [0.0], [0]

    def fdatasync(fd: int) -> None:
        clock[0] += 0.5  # each stretch takes half a second of the disk
        if os.fstat(fd).st_size == 2 * 4096:
            requests[0] += 1  # requests arrive during the second stretch

    monkeypatch.setattr(backups.os, "fdatasync", fdatasync)
    pacer = Pacer(
        busy_share=backups.COPY_BUSY_SHARE,
        idle_share=backups.COPY_IDLE_SHARE,
        requests=lambda: requests[0],
        monotonic=lambda: clock[0],
        longest=60.0,
        ledger=Ledger(),
    )
    pauses: list[float] = []
    backups.paced_copy(tmp_path / "src", tmp_path / "dst", pauses.append, pacer=pacer)
    assert pauses == pytest.approx([0.5, 4.5, 0.5, 0.5])
