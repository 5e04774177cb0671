"""The node gives metadata backups the disk probes' view: no copy goes to a disk found
offline (I/O on a failed zpool can hang), and a disk back online gets the copy it missed."""

from __future__ import annotations

from tests.inproc.conftest import InProc


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
