"""The start-up orphan sweep runs after a crash, not after a clean stop: a clean stop marks the
metadata store, the next start takes the mark away (so a crash after it leaves none) and
skips the walk of every volume record; a start after a stop not known to be clean sweeps."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from stratum.config import load_config
from stratum.node import Node
from stratum.service.garbage import CLEAN_STOP_KEY
from stratum.service.objects import PutOptions
from stratum.util.clock import ManualClock


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _start(tmp_path: Path) -> Node:
    disks = [tmp_path / f"d{i}" for i in range(6)]
    config = load_config(
        overrides={"storage.data_dir": tmp_path / "data", "tiers.hot.disks": disks}
    )
    node = Node.open(config, ManualClock())
    await node.start()
    return node


def _mark(node: Node) -> bytes | None:
    return node.meta.read(lambda tx: tx.get("info", CLEAN_STOP_KEY))


async def test_only_a_start_after_an_unclean_stop_sweeps(tmp_path: Path) -> None:
    node = await _start(tmp_path)
    await node.service.create_bucket("bkt", "owner", "us-east-1")
    data = os.urandom(300_000)  # erasure-coded: shard files
    await node.service.put_object("bkt", "big", _chunks(data), PutOptions("owner"))
    view = node.service.head_object("bkt", "big", "owner")
    storage_id = str(view.volume.location.get("volume_id") or view.volume.volume_id)
    await node.service.garbage._sweep_task  # type: ignore[misc]  # this start's sweep
    await node.stop(clean=True)
    assert _mark(node) is not None
    node.close()

    # What a crash would leave (planted after the clean stop: the next start must not look)
    shards = sorted(tmp_path.glob(f"d*/ec/*/{storage_id}.*"))
    orphans = [s.with_name(s.name.replace(storage_id, "0" * len(storage_id))) for s in shards]
    for shard, orphan in zip(shards, orphans, strict=True):
        shutil.copyfile(shard, orphan)

    node = await _start(tmp_path)
    assert node.service.garbage._sweep_task is None  # skipped
    assert _mark(node) is None  # taken away before anything is served
    assert all(o.exists() for o in orphans)
    await node.stop()  # not known to be clean (as a kill, or a worker that had to be killed)
    assert _mark(node) is None
    node.close()

    node = await _start(tmp_path)
    assert await node.service.garbage._sweep_task == len(orphans)  # type: ignore[misc]
    assert not any(o.exists() for o in orphans) and all(s.exists() for s in shards)
    got = b"".join([c async for c in node.service.read_volume(view.volume, 0, len(data))])
    assert got == data
    await node.stop(clean=True)
    assert _mark(node) is not None
    node.close()


async def test_a_sweep_that_fails_leaves_no_clean_mark(tmp_path: Path) -> None:
    """A volume record the sweep cannot decode ends its walk in an error: it judged nothing,
    so even a clean stop after it must not spare the next start its sweep."""
    node = await _start(tmp_path)
    await node.service.garbage._sweep_task  # type: ignore[misc]
    await node.meta.write(lambda tx: tx.put("volumes", b"f" * 32, b"\xff not a record"))
    await node.stop(clean=True)
    assert _mark(node) is not None  # that sweep ran before the damage
    node.close()
    node = await _start(tmp_path)  # the mark taken: no sweep
    await node.stop(clean=True)
    node.close()
    node = await _start(tmp_path)
    try:
        assert node.service.garbage._sweep_task is None
    finally:
        await node.stop()  # not clean: the next start sweeps, and fails
        node.close()
    node = await _start(tmp_path)
    assert await node.service.garbage._sweep_task == 0  # type: ignore[misc]
    await node.stop(clean=True)
    assert _mark(node) is None
    node.close()
