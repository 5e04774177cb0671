"""The pool layer: directories, and ZFS against a double of libzfs_core and the zfs/zpool
commands (:mod:`tests.fakezfs`). The real ZFS is tested in a VM: ``tests/zfs``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from stratum.block.tierstore import TierLayout, TierStore
from stratum.cli.main import main
from stratum.config import ZFS_COMPRESSION, Config, ConfigError, load_config
from stratum.pool import DirectoryPool, PoolError, tier_pool
from stratum.pool.snapshot import (
    SnapshotSchedule,
    newest,
    snapshot_name,
    snapshot_now,
    take,
    taken_at,
)
from stratum.pool.zfs import COMPRESSION, ZfsPool, ZfsTools, recordsize_for
from stratum.util.clock import ManualClock
from tests.fakezfs import FakeZfs

GiB = 1 << 30


@pytest.fixture
def fake() -> FakeZfs:
    zfs = FakeZfs()
    zfs.add_pool("tank", free=100 * GiB)
    return zfs


@pytest.fixture
def executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        yield pool


def zfs_pool(fake: FakeZfs, parent: str = "tank/stratum/hot") -> ZfsPool:
    return ZfsPool(fake.tools(), parent, compression="lz4", recordsize=256 * 1024)


def layout(disks: list[Path]) -> TierLayout:
    return TierLayout("hot", tuple(disks), 2, 1, 64 * 1024, 1 << 20)


# -- directories ----------------------------------------------------------------------


def test_directory_pool_describes_statvfs_and_counts_a_filesystem_once(tmp_path: Path) -> None:
    disks = [tmp_path / "a", tmp_path / "b"]
    for d in disks:
        d.mkdir()
    pool = DirectoryPool()
    pool.prepare(disks[0])
    described = pool.describe([*disks, tmp_path / "missing"])
    assert described[disks[0]].backing == "directory"
    assert described[disks[0]].health == "ONLINE" and not described[disks[0]].problem
    assert described[disks[0]].free_bytes > 0
    assert described[tmp_path / "missing"].health == "UNAVAIL"
    assert not described[tmp_path / "missing"].problem  # the disk checks decide that
    one = pool.capacity(disks[:1])
    both = pool.capacity(disks)  # same filesystem: not twice the space (other processes
    assert both.total == one.total  # write to it meanwhile: "used" moves, the size does not)
    assert abs(both.used - one.used) < one.total // 100
    assert 0 < one.used <= one.total
    assert pool.snapshot_datasets(disks) == []


# -- choosing and sizing ------------------------------------------------------------------


def test_recordsize_follows_the_block_size() -> None:
    assert recordsize_for(256 * 1024) == 256 * 1024
    assert recordsize_for(192 * 1024) == 128 * 1024
    assert recordsize_for(4096) == 4096
    assert recordsize_for(4 << 20) == 1 << 20


def test_every_configurable_compression_can_be_set() -> None:
    assert set(ZFS_COMPRESSION) == set(COMPRESSION)


def test_tier_pool_is_chosen_by_the_config(tmp_path: Path, fake: FakeZfs) -> None:
    config = load_config(None, overrides={"storage.data_dir": tmp_path})
    assert isinstance(tier_pool(config, "hot"), DirectoryPool)
    config = load_config(
        None,
        overrides={
            "storage.data_dir": tmp_path,
            "storage.block_size": "1MiB",
            "tiers.hot.backend": "zfs",
            "tiers.hot.zfs_parent": "tank/s/hot",
        },
    )
    pool = tier_pool(config, "hot", tools=fake.tools())
    assert isinstance(pool, ZfsPool)
    assert (pool.parent, pool.recordsize, pool.compression) == ("tank/s/hot", 1 << 20, "lz4")
    explicit = load_config(
        None,
        overrides={
            "storage.data_dir": tmp_path,
            "tiers.hot.backend": "zfs",
            "tiers.hot.zfs_parent": "tank/s/hot",
            "tiers.hot.zfs_recordsize": "64KiB",
            "tiers.hot.zfs_compression": "zstd",
        },
    )
    pool = tier_pool(explicit, "hot", tools=fake.tools())
    assert isinstance(pool, ZfsPool) and (pool.recordsize, pool.compression) == (65536, "zstd")


@pytest.mark.parametrize(
    ("overrides", "key", "why"),
    [
        ({"tiers.hot.backend": "zfs"}, "tiers.hot.zfs_parent", "must be set"),
        ({"tiers.hot.backend": "btrfs"}, "tiers.hot.backend", '"directory" or "zfs"'),
        ({"tiers.warm.zfs_parent": "/tank"}, "tiers.warm.zfs_parent", "dataset name"),
        ({"tiers.hot.zfs_recordsize": "192KiB"}, "tiers.hot.zfs_recordsize", "power of two"),
        ({"tiers.hot.zfs_compression": "lz5"}, "tiers.hot.zfs_compression", '"lz4"'),
        ({"storage.snapshot_keep": 0}, "storage.snapshot_keep", "between 1"),
        (
            {
                "tiers.warm.backend": "zfs",
                "tiers.warm.zfs_parent": "tank/w",
                "tiers.warm.disks": ["/a/d1", "/b/d1"],
            },
            "tiers.warm.disks",
            "same dataset tank/w/d1",
        ),
    ],
)
def test_zfs_settings_are_checked(overrides: dict[str, object], key: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, overrides=overrides)
    assert caught.value.key == key and why in caught.value.why


def test_defaults_keep_directories_and_no_schedule() -> None:
    config = load_config(None)
    assert config.tiers.hot.backend == config.tiers.warm.backend == "directory"
    assert config.tiers.hot.zfs_recordsize == 0  # derived from block_size
    assert config.storage.snapshot_interval == 0 and config.storage.snapshot_keep == 7


# -- ZFS: preparing disks -------------------------------------------------------------------


def test_prepare_creates_parents_and_the_dataset_with_tier_properties(
    tmp_path: Path, fake: FakeZfs
) -> None:
    disk = tmp_path / "hot" / "d1"
    zfs_pool(fake).prepare(disk)
    ds = fake.datasets["tank/stratum/hot/d1"]
    assert ds.props == {
        "compression": 15,
        "atime": 0,
        "recordsize": 256 * 1024,
        "mountpoint": str(disk),
    }
    assert ds.mounted and disk.is_dir()
    assert fake.datasets["tank/stratum"].props["canmount"] == 0
    assert fake.datasets["tank/stratum/hot"].props["canmount"] == 0
    zfs_pool(fake).prepare(disk)  # a second start uses what is there
    assert fake.datasets["tank/stratum/hot/d1"] is ds


def test_prepare_mounts_an_existing_unmounted_dataset(tmp_path: Path, fake: FakeZfs) -> None:
    disk = tmp_path / "d1"
    fake.add_dataset("tank/stratum", mounted=False)
    fake.add_dataset("tank/stratum/hot", mounted=False)
    fake.add_dataset("tank/stratum/hot/d1", mountpoint=str(disk), mounted=False)
    zfs_pool(fake).prepare(disk)
    assert fake.datasets["tank/stratum/hot/d1"].mounted
    assert fake.datasets["tank/stratum/hot/d1"].props == {"mountpoint": str(disk)}  # untouched


def test_prepare_refuses_a_dataset_mounted_elsewhere(tmp_path: Path, fake: FakeZfs) -> None:
    fake.add_dataset("tank/stratum", mounted=False)
    fake.add_dataset("tank/stratum/hot", mounted=False)
    fake.add_dataset("tank/stratum/hot/d1", mountpoint=str(tmp_path / "elsewhere"))
    with pytest.raises(PoolError, match="zfs set mountpoint="):
        zfs_pool(fake).prepare(tmp_path / "d1")


def test_prepare_refuses_a_missing_or_failed_pool(tmp_path: Path, fake: FakeZfs) -> None:
    with pytest.raises(PoolError, match="zfs pool other is not imported"):
        zfs_pool(fake, "other/hot").prepare(tmp_path / "d1")
    fake.health["tank"] = "FAULTED"
    with pytest.raises(PoolError, match="zfs pool tank is FAULTED"):
        zfs_pool(fake).prepare(tmp_path / "d1")
    assert "tank/stratum/hot/d1" not in fake.datasets


def test_prepare_will_not_hide_files_under_a_mount(tmp_path: Path, fake: FakeZfs) -> None:
    disk = tmp_path / "d1"
    disk.mkdir()
    (disk / "stratum-disk.json").write_text("{}")  # e.g. it was a directory disk
    with pytest.raises(PoolError, match="not empty"):
        zfs_pool(fake).prepare(disk)


# -- ZFS: a tier on datasets ----------------------------------------------------------------


async def test_tier_on_zfs_serves_and_reports_pool_health(
    tmp_path: Path, fake: FakeZfs, executor: concurrent.futures.Executor
) -> None:
    disks = [tmp_path / "hot" / f"d{i}" for i in range(3)]
    store = TierStore(layout(disks), executor, pool=zfs_pool(fake))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, store.open)  # blocking: never on the loop
    try:
        volume = uuid.uuid4().hex
        location = await store.put_small(volume, b"hello zfs", {"bucket": "b", "key": "k"})
        read = [chunk async for chunk in store.read("seg", location, 0, 9)]
        assert b"".join(read) == b"hello zfs"
        assert all((d / "seg").is_dir() for d in disks)

        ids = [d.disk_id for d in store.disks]
        described = store.describe_disks()
        assert described[ids[0]]["backing"] == "zfs"
        assert described[ids[0]]["dataset"] == "tank/stratum/hot/d0"
        assert described[ids[0]]["zpool"] == "tank"
        assert described[ids[0]]["health"] == "ONLINE"
        assert described[ids[0]]["free_bytes"] == 100 * GiB

        states = await loop.run_in_executor(None, store.probe)
        assert set(states.values()) == {"online"}

        fake.health["tank"] = "DEGRADED"  # a mirror lost a side: still serving
        states = await loop.run_in_executor(None, store.probe)
        assert set(states.values()) == {"online"}
        assert store.describe_disk(ids[1])["health"] == "DEGRADED"

        fake.health["tank"] = "FAULTED"
        states = await loop.run_in_executor(None, store.probe)
        assert set(states.values()) == {"offline: zfs pool tank is FAULTED"}
        assert store.describe_disk(ids[2])["health"] == "FAULTED"

        fake.health["tank"] = "ONLINE"
        fake.unmount("tank/stratum/hot/d2")
        states = await loop.run_in_executor(None, store.probe)
        assert states[ids[2]] == "offline: dataset tank/stratum/hot/d2 is not mounted"
        assert states[ids[0]] == "online"

        del fake.health["tank"]  # exported, or its disks all gone
        states = await loop.run_in_executor(None, store.probe)
        assert set(states.values()) == {"offline: zfs pool tank is not imported"}
        assert store.describe_disk(ids[0])["health"] == "MISSING"
    finally:
        await store.close()
    assert fake.loop_calls == []


def test_capacity_counts_shared_pool_space_once_and_honours_a_quota(
    tmp_path: Path, fake: FakeZfs, executor: concurrent.futures.Executor
) -> None:
    disks = [tmp_path / f"d{i}" for i in range(3)]
    pool = zfs_pool(fake)
    for disk in disks:
        pool.prepare(disk)
    for i in range(3):
        fake.set_used(f"tank/stratum/hot/d{i}", (i + 1) * GiB)
    capacity = pool.capacity(disks)
    assert capacity.used == 6 * GiB
    assert capacity.total == 6 * GiB + 100 * GiB  # the pool's free space, once
    fake.datasets["tank/stratum/hot"].props["quota"] = 10 * GiB
    assert pool.capacity(disks).total == 10 * GiB
    fake.health["tank"] = "FAULTED"
    assert pool.capacity(disks).total == 0  # nothing that can take data
    store = TierStore(layout(disks), executor, pool=pool)
    assert store.capacity() == pool.capacity(disks)


# -- snapshots ------------------------------------------------------------------------------


def zfs_config(tmp_path: Path, **more: object) -> Config:
    return load_config(
        None,
        overrides={
            "storage.data_dir": tmp_path / "data",
            "tiers.hot.backend": "zfs",
            "tiers.hot.zfs_parent": "tank/stratum/hot",
            "tiers.hot.disks": [str(tmp_path / "hot" / "d0"), str(tmp_path / "hot" / "d1")],
            **more,
        },
    )


def test_snapshot_names_carry_their_time() -> None:
    when = 1_700_000_000.0
    assert snapshot_name(when) == "stratum-20231114T221320Z"
    assert taken_at(f"tank/x@{snapshot_name(when)}") == when
    assert taken_at("tank/x@mine") is None


def test_snapshot_takes_metadata_and_data_of_one_pool_in_one_call(
    tmp_path: Path, fake: FakeZfs
) -> None:
    config = zfs_config(tmp_path)
    fake.add_dataset("tank/meta", mountpoint=str(tmp_path / "data"))
    (tmp_path / "data" / "meta").mkdir()
    pool = tier_pool(config, "hot", tools=fake.tools())
    for disk in config.tiers.hot.disks:
        pool.prepare(disk)

    only_meta = snapshot_now(config, data=False, when=1000.0, tools=fake.tools())
    assert only_meta.created == ["tank/meta@stratum-19700101T001640Z"]

    calls_before = len(fake.snapshots)
    report = snapshot_now(config, data=True, when=2000.0, tools=fake.tools())
    name = snapshot_name(2000.0)
    assert report.created == [
        f"tank/meta@{name}",
        f"tank/stratum/hot/d0@{name}",
        f"tank/stratum/hot/d1@{name}",
    ]
    assert fake.snapshots[calls_before:] == report.created  # one atomic call
    assert report.notes == []


def test_snapshot_notes_what_is_not_on_zfs(tmp_path: Path, fake: FakeZfs) -> None:
    config = load_config(None, overrides={"storage.data_dir": tmp_path / "data"})
    (tmp_path / "data" / "meta").mkdir(parents=True)
    with pytest.raises(PoolError, match=r"nothing to snapshot: metadata: .* is not on a ZFS"):
        snapshot_now(config, data=True, when=1.0, tools=fake.tools())


def test_snapshots_are_pruned_to_the_newest_keep(tmp_path: Path, fake: FakeZfs) -> None:
    fake.add_dataset("tank/meta", mountpoint=str(tmp_path))
    fake.lzc_snapshot([b"tank/meta@mine"])  # someone else's: never pruned
    tools = fake.tools()
    for when in (100.0, 200.0, 300.0, 400.0):
        report = take(tools, ["tank/meta"], when, keep=2)
    assert report.destroyed == [f"tank/meta@{snapshot_name(200.0)}"]
    assert fake.snapshots == [
        "tank/meta@mine",
        f"tank/meta@{snapshot_name(300.0)}",
        f"tank/meta@{snapshot_name(400.0)}",
    ]
    assert newest(tools, ["tank/meta"]) == 400.0


def test_datasets_of_different_pools_are_snapshotted_metadata_first(
    tmp_path: Path, fake: FakeZfs
) -> None:
    fake.add_pool("fast")
    fake.add_dataset("fast/meta", mountpoint=str(tmp_path / "m"))
    fake.add_dataset("tank/d0", mountpoint=str(tmp_path / "d0"))
    report = take(fake.tools(), ["fast/meta", "tank/d0"], 5.0, keep=3)
    assert [s.partition("@")[0] for s in report.created] == ["fast/meta", "tank/d0"]
    with pytest.raises(PoolError, match="cannot snapshot"):
        take(fake.tools(), ["fast/meta"], 5.0, keep=3)  # exists already: ZFS refuses


async def test_scheduled_snapshots_run_off_the_loop(
    tmp_path: Path, fake: FakeZfs, executor: concurrent.futures.Executor
) -> None:
    fake.add_dataset("tank/meta", mountpoint=str(tmp_path))
    clock = ManualClock(1_700_000_000.0)
    schedule = SnapshotSchedule(
        fake.tools(),
        lambda: ["tank/meta"],
        interval=1.0,
        keep=2,
        clock=clock,
        executor=executor,
    )
    await schedule.start()
    try:
        for _ in range(100):  # the first one is due at once: there is none yet
            if fake.snapshots:
                break
            await asyncio.sleep(0.02)
        assert fake.snapshots == [f"tank/meta@{snapshot_name(clock.now())}"]
        clock.advance(1.0)
        for _ in range(200):
            if len(fake.snapshots) == 2:
                break
            await asyncio.sleep(0.02)
        assert len(fake.snapshots) == 2
    finally:
        await schedule.stop()
    assert fake.loop_calls == []


def test_snapshot_command_without_zfs_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["snapshot", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "python3-pyzfs" in err or "not on a ZFS dataset" in err


def test_unknown_pool_health_does_not_fail_the_disks(tmp_path: Path, fake: FakeZfs) -> None:
    disk = tmp_path / "d0"
    pool = zfs_pool(fake)
    pool.prepare(disk)

    def broken(argv: Sequence[str]) -> str:
        if argv[0] == "zpool":
            raise PoolError("zpool: timed out")
        return fake.run(argv)

    described = ZfsPool(ZfsTools(fake.lzc, broken), "tank/stratum/hot", recordsize=4096)
    info = described.describe([disk])[disk]
    assert info.health == "UNKNOWN" and not info.problem and info.free_bytes == 100 * GiB
