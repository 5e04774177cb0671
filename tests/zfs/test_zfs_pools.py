"""Stratum on a real ZFS: runs only inside the test VM (``zfs/run-in-vm.sh``, which sets
``ZFSVM=1`` and ``ZFSVM_DISKS``); skipped everywhere else.

    zfs/build.sh && zfs/run-in-vm.sh python3 -m pytest -q -p no:cacheprovider tests/zfs

One VM boot runs the whole module (each boot costs seconds, and the guest is an emulated
CPU about 20x slower than the host), so one server serves most tests, in file order:

- the pool layer alone against libzfs_core and the zfs/zpool commands;
- ``stratum serve`` with its hot tier on a mirror pool and its warm tier on a file-vdev pool:
  datasets created with the tier properties, objects stored and read, ``disk list``
  showing datasets, capacity and health, snapshots scheduled and on demand;
- a mirror losing a side (DEGRADED: still in use); a start refused when a pool is missing;
- restoring from a snapshot with ``zfs rollback``, as zfs/README.md documents;
- a pool that fails (its only device loses its labels): its disks go offline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("ZFSVM") != "1", reason="needs the ZFS VM (zfs/run-in-vm.sh)"
)

ROOT = Path(__file__).resolve().parents[2]
SRV = Path("/srv/stratum")
CONFIG = Path("/tmp/stratum-zfs.toml")
WARM_VDEV = Path("/tmp/warm.img")
HOT_DISKS = [SRV / "hot" / f"d{i}" for i in range(3)]
WARM_DISKS = [SRV / "warm" / f"w{i}" for i in range(2)]


def sh(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def zfs_get(dataset: str, *props: str) -> dict[str, str]:
    out = sh("zfs", "get", "-Hp", "-o", "property,value", ",".join(props), dataset)
    return dict(line.split("\t", 1) for line in out.splitlines())


def stratum(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``stratum`` command (each run starts an interpreter: slow in the VM, so the
    tests call most things in process and the command once each)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "stratum", *args, "--config", str(CONFIG)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def disk_list() -> list[dict[str, Any]]:
    """What ``stratum disk list --json`` prints: the disks of the server's admin status."""
    from stratum.cli.admin import admin_call, server_endpoint
    from stratum.config import load_config

    config = load_config(CONFIG)
    endpoint = server_endpoint(config)
    assert endpoint is not None
    disks: list[dict[str, Any]] = admin_call(config, endpoint, "GET", "/_stratum/status", 60)[
        "disks"
    ]
    return disks


def take_snapshot(*, data: bool = True) -> list[str]:
    """``stratum snapshot [--data]``, in process: the snapshots it created."""
    from stratum.config import load_config
    from stratum.pool.snapshot import snapshot_now

    return snapshot_now(load_config(CONFIG), data=data, when=time.time()).created


def wait_for(what: str, check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1.0)


@pytest.fixture(scope="module")
def pools() -> None:
    """tank: a mirror of the VM's two disks (hot tier, metadata); warm: one file vdev.

    failmode=continue (as zfs/README.md advises): I/O on a failed pool returns EIO rather
    than blocking. The pools are not destroyed afterwards: the last test breaks one for
    good, and the VM's disks are thrown away anyway.
    """
    disks = os.environ.get("ZFSVM_DISKS", "").split()
    assert len(disks) >= 2, "the VM gives two disks at least"
    create = ["zpool", "create", "-f", "-o", "failmode=continue", "-m", "none"]
    sh(*create, "-o", "ashift=12", "tank", "mirror", *disks[:2])
    with open(WARM_VDEV, "wb") as f:
        f.truncate(384 << 20)
    sh(*create, "warm", str(WARM_VDEV))
    # the metadata's dataset is the operator's: Stratum only snapshots it
    sh("zfs", "create", "-o", f"mountpoint={SRV / 'data'}", "tank/meta")


def write_config(**storage: object) -> None:
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in storage.items())
    CONFIG.write_text(
        f"""
[storage]
data_dir = "{SRV / "data"}"
data_shards = 2
parity_shards = 1
snapshot_keep = 2
{extra}
[tiers.hot]
backend = "zfs"
zfs_parent = "tank/stratum/hot"
disks = {json.dumps([str(d) for d in HOT_DISKS])}

[tiers.warm]
backend = "zfs"
zfs_parent = "warm/stratum"
zfs_compression = "zstd"
disks = {json.dumps([str(d) for d in WARM_DISKS])}
data_shards = 1
parity_shards = 1

[tiering]
enabled = false
"""
    )


class Stratum:
    """The running server; a test that restarts it puts the new one here."""

    def __init__(self) -> None:
        self.srv: Any = None

    def start(self) -> None:
        from tests.server.conftest import start_server

        self.srv = start_server(SRV / "data", config=CONFIG, timeout=300)

    def stop(self) -> None:
        if self.srv is not None:
            assert self.srv.stop(timeout=120) == 0, "".join(self.srv.output[-30:])


@pytest.fixture(scope="module")
def server(pools: None) -> Iterator[Stratum]:
    from tests.server.conftest import ACCESS_KEY, SECRET_KEY

    write_config(snapshot_interval="1h", snapshot_data=True)
    with pytest.MonkeyPatch.context() as env:  # the root keys, for the admin calls
        env.setenv("STRATUM_ACCESS_KEY", ACCESS_KEY)
        env.setenv("STRATUM_SECRET_KEY", SECRET_KEY)
        running = Stratum()
        running.start()
        yield running
        running.stop()


@pytest.fixture(scope="module")
def s3(server: Stratum) -> Any:
    client = server.srv.client()
    client.create_bucket(Bucket="photos")
    return client


# -- the pool layer alone -------------------------------------------------------------------


def test_pool_layer_against_real_libzfs_core(pools: None, tmp_path: Path) -> None:
    from stratum.pool.snapshot import take
    from stratum.pool.zfs import ZfsPool, load_tools

    tools = load_tools()
    pool = ZfsPool(tools, "tank/unit/a", compression="lz4", recordsize=128 * 1024)
    disk = tmp_path / "u0"
    pool.prepare(disk)  # creates tank/unit, tank/unit/a (canmount=off) and tank/unit/a/u0
    props = zfs_get("tank/unit/a/u0", "compression", "atime", "recordsize", "mountpoint", "mounted")
    assert props == {
        "compression": "lz4",
        "atime": "off",
        "recordsize": str(128 * 1024),
        "mountpoint": str(disk),
        "mounted": "yes",
    }
    assert zfs_get("tank/unit/a", "canmount") == {"canmount": "off"}
    (disk / "blob").write_bytes(os.urandom(1 << 20))
    sh("zpool", "sync", "tank")
    described = pool.describe([disk])[disk]
    assert (described.dataset, described.pool, described.health) == (
        "tank/unit/a/u0",
        "tank",
        "ONLINE",
    )
    assert described.used_bytes >= 1 << 20 and described.free_bytes > 0 and not described.problem
    sh("zfs", "set", "quota=64M", "tank/unit/a")
    capacity = pool.capacity([disk])
    assert capacity.total <= 64 << 20 and capacity.used >= 1 << 20
    assert tools.dataset_of(disk / "blob") == "tank/unit/a/u0"
    assert tools.dataset_of(Path("/tmp")) is None
    for when in (1000.0, 2000.0, 3000.0):
        take(tools, ["tank/unit/a/u0"], when, keep=2)
    assert len(tools.snapshots("tank/unit/a/u0")) == 2
    sh("zfs", "destroy", "-r", "tank/unit")


# -- Stratum on ZFS ------------------------------------------------------------------------


def test_start_creates_the_tier_datasets(server: Stratum) -> None:
    for disk in HOT_DISKS:
        props = zfs_get(f"tank/stratum/hot/{disk.name}", "compression", "atime", "recordsize")
        assert props == {"compression": "lz4", "atime": "off", "recordsize": str(256 * 1024)}
        assert zfs_get(f"tank/stratum/hot/{disk.name}", "mountpoint")["mountpoint"] == str(disk)
        assert (disk / "stratum-disk.json").exists()
    assert zfs_get("warm/stratum/w0", "compression")["compression"] == "zstd"
    assert zfs_get("tank/stratum/hot", "canmount")["canmount"] == "off"


def test_objects_are_stored_on_the_datasets(s3: Any) -> None:
    small, large = os.urandom(10_000), os.urandom(3 << 20)
    s3.put_object(Bucket="photos", Key="small", Body=small)
    s3.put_object(Bucket="photos", Key="large", Body=large)
    assert s3.get_object(Bucket="photos", Key="small")["Body"].read() == small
    assert s3.get_object(Bucket="photos", Key="large")["Body"].read() == large
    shards = [p for d in HOT_DISKS for p in (d / "ec").rglob("*") if p.is_file()]
    assert len(shards) == 3  # 2 data + 1 parity, one per dataset


def test_disk_list_shows_datasets_capacity_and_health(server: Stratum, s3: Any) -> None:
    disks = {d["path"]: d for d in disk_list()}
    for disk in HOT_DISKS:
        row = disks[str(disk)]
        assert row["backing"] == "zfs" and row["dataset"] == f"tank/stratum/hot/{disk.name}"
        assert row["zpool"] == "tank" and row["health"] == "ONLINE" and row["state"] == "online"
        available = int(zfs_get(row["dataset"], "available")["available"])
        assert abs(row["free_bytes"] - available) < 64 << 20  # as of the last probe
        assert row["used_bytes"] > 0
    assert disks[str(WARM_DISKS[0])]["zpool"] == "warm"
    done = stratum("disk", "list", "--json")  # the command prints the same
    assert done.returncode == 0, done.stderr
    assert {d["path"]: d["dataset"] for d in json.loads(done.stdout)} == {
        path: d["dataset"] for path, d in disks.items()
    }


def test_a_snapshot_was_scheduled_at_start(server: Stratum) -> None:
    def scheduled() -> list[str]:
        out = sh("zfs", "list", "-H", "-o", "name", "-t", "snapshot")
        return [s for s in out.split() if s.startswith("tank/meta@stratum-")]

    (first,) = wait_for("the scheduled snapshot", scheduled)
    name = first.partition("@")[2]
    out = sh("zfs", "list", "-H", "-o", "name", "-t", "snapshot")
    assert f"tank/stratum/hot/d0@{name}" in out and f"warm/stratum/w1@{name}" in out


def test_snapshot_command_and_retention(server: Stratum, s3: Any) -> None:
    done = stratum("snapshot", "--data")
    assert done.returncode == 0, done.stderr
    created = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("created")]
    for _ in range(2):
        time.sleep(1.1)  # snapshot names have a one-second resolution
        created += take_snapshot()
    last = created[-1].partition("@")[2]
    assert {c.partition("@")[0] for c in created if c.endswith(last)} == {
        "tank/meta",
        *(f"tank/stratum/hot/{d.name}" for d in HOT_DISKS),
        *(f"warm/stratum/{d.name}" for d in WARM_DISKS),
    }
    for dataset in ("tank/meta", "tank/stratum/hot/d0", "warm/stratum/w1"):
        ours = sh("zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-d", "1", dataset).split()
        assert ours[-1] == f"{dataset}@{last}" and len(ours) == 2  # snapshot_keep


def test_a_degraded_mirror_is_reported_and_stays_in_use(server: Stratum, s3: Any) -> None:
    second = os.environ["ZFSVM_DISKS"].split()[1]
    sh("zpool", "offline", "tank", second)
    assert "DEGRADED" in sh("zpool", "list", "-H", "-o", "health", "tank")

    def degraded() -> list[dict[str, Any]]:
        rows = [d for d in disk_list() if d["zpool"] == "tank"]
        return rows if all(d["health"] == "DEGRADED" for d in rows) else []

    rows = wait_for("DEGRADED in disk list", degraded)
    assert {d["state"] for d in rows} == {"online"}
    body = os.urandom(1 << 20)
    s3.put_object(Bucket="photos", Key="while-degraded", Body=body)
    assert s3.get_object(Bucket="photos", Key="while-degraded")["Body"].read() == body
    sh("zpool", "online", "tank", second)


def test_restore_by_clone_and_copy(server: Stratum, s3: Any, tmp_path: Path) -> None:
    """zfs/README.md's other restore: clone a snapshot set, serve the clones on another
    port, copy what was lost back into the live store."""
    from tests.server.conftest import start_server

    s3.put_object(Bucket="photos", Key="precious", Body=b"worth a restore")
    snapshots = take_snapshot()
    s3.delete_object(Bucket="photos", Key="precious")

    restore = Path("/srv/restore")
    mounts: dict[str, Path] = {}
    for snapshot in snapshots:
        dataset = snapshot.partition("@")[0]
        pool, _, rest = dataset.partition("/")
        where = restore / ("data" if rest == "meta" else rest.rpartition("/")[2])
        sh("zfs", "create", "-p", "-o", "canmount=off", f"{pool}/restore", check=False)
        sh("zfs", "clone", "-o", f"mountpoint={where}", snapshot, f"{pool}/restore/{where.name}")
        mounts[dataset] = where
    config = tmp_path / "restore.toml"
    config.write_text(
        f"""
[storage]
data_dir = "{mounts["tank/meta"]}"
data_shards = 2
parity_shards = 1
[tiers.hot]
disks = {json.dumps([str(restore / d.name) for d in HOT_DISKS])}
[tiers.warm]
disks = {json.dumps([str(restore / d.name) for d in WARM_DISKS])}
data_shards = 1
parity_shards = 1
[tiering]
enabled = false
"""
    )
    old = start_server(mounts["tank/meta"], config=config, timeout=300)
    try:
        body = old.client().get_object(Bucket="photos", Key="precious")["Body"].read()
    finally:
        assert old.stop(timeout=120) == 0
    s3.put_object(Bucket="photos", Key="precious", Body=body)
    assert s3.get_object(Bucket="photos", Key="precious")["Body"].read() == b"worth a restore"
    sh("zfs", "destroy", "-r", "tank/restore")
    sh("zfs", "destroy", "-r", "warm/restore")


def test_restore_by_rollback(server: Stratum, s3: Any) -> None:
    """zfs/README.md's restore: stop, roll every dataset back to one snapshot, start."""
    time.sleep(1.1)  # a new snapshot name
    snapshots = take_snapshot()
    s3.put_object(Bucket="photos", Key="after-snapshot", Body=b"gone after the rollback")
    s3.delete_object(Bucket="photos", Key="small")
    server.stop()
    for snapshot in snapshots:
        # Unmounted: a rollback under a mounted dataset leaves pages of files that were
        # mmapped (LMDB's) stale in the page cache until the next mount (zfs 2.1.11).
        dataset = snapshot.partition("@")[0]
        sh("zfs", "unmount", dataset)
        sh("zfs", "rollback", "-r", snapshot)
        sh("zfs", "mount", dataset)
    server.start()
    client = server.srv.client()
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="photos").get("Contents", [])}
    assert "small" in keys and "after-snapshot" not in keys, (keys, snapshots)
    assert len(client.get_object(Bucket="photos", Key="large")["Body"].read()) == 3 << 20
    assert len(client.get_object(Bucket="photos", Key="small")["Body"].read()) == 10_000


def test_a_missing_pool_stops_the_start(pools: None, tmp_path: Path) -> None:
    config = tmp_path / "gone.toml"
    config.write_text(
        f"""
[storage]
data_dir = "{tmp_path / "data"}"
[tiers.warm]
backend = "zfs"
zfs_parent = "gone/stratum"
disks = ["{tmp_path / "w0"}"]
"""
    )
    from stratum.block.disk import DiskError
    from stratum.config import load_config
    from stratum.node import Node

    with pytest.raises(DiskError, match="zfs pool gone is not imported"):
        Node.open(load_config(config))  # what `stratum serve` reports, exiting with 1


def test_a_failed_pool_takes_its_disks_offline(server: Stratum) -> None:
    """Last: the warm pool's only device loses its labels, the pool is UNAVAIL for good."""
    with open(WARM_VDEV, "r+b") as f:  # ZFS keeps 2 labels at each end of a device
        f.write(bytes(1 << 20))
        f.seek((384 - 1) << 20)
        f.write(bytes(1 << 20))
    sh("zpool", "reopen", "warm")
    assert sh("zpool", "list", "-H", "-o", "health", "warm").strip() in ("UNAVAIL", "FAULTED")

    def offline() -> list[dict[str, Any]]:
        rows = [d for d in disk_list() if d["zpool"] == "warm"]
        return rows if all(d["state"].startswith("offline") for d in rows) else []

    rows = wait_for("warm disks offline", offline)
    health = rows[0]["health"]
    assert all(d["state"] == f"offline: zfs pool warm is {health}" for d in rows), rows
    hot = [d for d in disk_list() if d["zpool"] == "tank"]
    assert {d["state"] for d in hot} == {"online"}
    client = server.srv.client()
    body = os.urandom(50_000)
    client.put_object(Bucket="photos", Key="hot-still-works", Body=body)
    assert client.get_object(Bucket="photos", Key="hot-still-works")["Body"].read() == body
    # A clean stop would wait for ever: the segment files open on the failed pool cannot be
    # synced. (systemd kills a service that does not stop within TimeoutStopSec.)
    server.srv.process.kill()
    server.srv = None
