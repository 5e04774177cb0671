"""The node gives metadata backups the disk probes' view: no copy goes to a disk found
offline (I/O on a failed zpool can hang), and a disk back online gets the copy it missed; and
the number of copies its tiers' parity asks for, spread over the tiers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stratum.maintenance.backups import find_backups
from tests.inproc.conftest import InProc, serving


async def test_metadata_backups_skip_disks_the_probes_found_offline(inproc: InProc) -> None:
    node = inproc.node
    assert node.backup is not None
    (disk,) = node.tiers["hot"].disks
    node.maintenance.disk_states[disk.disk_id] = "offline: directory missing"
    skipped = await node.backup.backup_now(force=True)
    assert skipped.written == () and str(disk.path) in {str(p) for p in skipped.offline}
    node.maintenance.disk_states[disk.disk_id] = "online"
    back = await node.backup.backup_now()
    assert back.written == (disk.path,)


async def test_the_node_keeps_one_more_copy_than_the_tiers_parity_spread_over_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2+1 in hot and in warm: two copies, one in each tier, not six; a disk found offline is
    replaced by another of its tier."""
    tiers = {t: [tmp_path / f"{t}{i}" for i in range(3)] for t in ("hot", "warm")}
    overrides: dict[str, Any] = {"storage.data_dir": tmp_path / "data"}
    for t, disks in tiers.items():
        overrides |= {f"tiers.{t}.disks": disks, f"tiers.{t}.data_shards": 2}
        overrides[f"tiers.{t}.parity_shards"] = 1
    async with serving(monkeypatch, overrides) as running:
        node = running.node
        assert node.backup is not None
        first = await node.backup.backup_now(force=True)
        assert first.written == (tiers["hot"][0], tiers["warm"][0])
        (warm0,) = [d for d in node.tiers["warm"].disks if d.path == tiers["warm"][0]]
        node.maintenance.disk_states[warm0.disk_id] = "offline: directory missing"
        second = await node.backup.backup_now()
        assert second.written == (tiers["hot"][0], tiers["warm"][1])
    held = {c.path.parent for c in find_backups([*tiers["hot"], *tiers["warm"]])}
    assert held == {tiers["hot"][0], tiers["warm"][0], tiers["warm"][1]}, "warm0 left alone"
