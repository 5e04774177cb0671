"""Recovery of versioned buckets from the disks alone: version chains, delete markers, null
versions and bucket versioning states come back as the store had them; with a backup,
versions removed for good before it stay removed."""

from __future__ import annotations

import asyncio
from typing import Any

from stratum.maintenance.recovery import recover
from stratum.maintenance.recovery_plan import SMALL_PUT_MARGIN
from stratum.meta import versions
from stratum.meta.records import BucketRecord
from stratum.node import Node
from tests.unit.test_recovery import (
    Env,
    KiB,
    MiB,
    _close,
    _garbage,
    _lose_store,
    _multipart,
    _open,
    _put,
    _read,
    _root,
    _shard_paths,
    env,  # noqa: F401 - the fixture
)


async def _versioning(node: Node, bucket: str, state: str) -> None:
    def change(record: BucketRecord) -> bool:
        record.versioning = state
        return True

    await node.service.configure_bucket(bucket, _root(node), change)


def _histories(node: Node, keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[Any]]:
    def look(tx: Any) -> dict[tuple[str, str], list[Any]]:
        return {
            (b, k): [
                (r.version_id, r.order, r.delete_marker, r.etag, r.size, r.volume_id)
                for r in versions.history(tx, b, k)
            ]
            for b, k in keys
        }

    return node.meta.read(look)


async def test_version_chains_come_back_from_the_disks(env: Env) -> None:  # noqa: F811
    node = await _open(env)
    root = _root(node)
    keys = [("ver", "k"), ("ver", "gone"), ("ver", "n"), ("flat", "f")]
    try:
        for bucket in ("ver", "flat"):
            await node.service.create_bucket(bucket, root, "us-east-1")
        await _put(node, "ver", "n", b"before versioning")  # becomes the null version
        await _versioning(node, "ver", "Enabled")
        await _put(node, "ver", "k", b"small one")
        large = await _put(node, "ver", "k", b"L" * (300 * KiB))
        await _multipart(node, "ver", "k", [b"M" * (5 * MiB), b"tail"])
        await node.service.delete_object("ver", "k", root)  # a marker on top
        await _put(node, "ver", "n", b"enabled version")
        await _put(node, "ver", "gone", b"x")
        await node.service.delete_object("ver", "gone", root)
        await node.service.delete_object("ver", "k", root, _id(node, large))
        await node.service.collect_garbage()  # its shard files are freed
        await _versioning(node, "ver", "Suspended")
        await _put(node, "ver", "n", b"null again")  # replaces the first null version
        await _put(node, "flat", "f", b"one")
        await _put(node, "flat", "f", b"two")
        want = _histories(node, keys)
    finally:
        await _close(node)
    assert not _shard_paths(env, large)
    _lose_store(env)

    report = await asyncio.to_thread(recover, env.config)

    assert report.complete, report
    assert report.markers == 2 and report.bucket_configs == 1
    node = await _open(env)
    try:
        assert _histories(node, keys) == want
        assert node.service.get_bucket("ver", root).versioning == "Suspended"
        assert node.service.get_bucket("flat", root).versioning == ""
        for (bucket, key), history in want.items():
            for version_id, _order, marker, etag, size, _vol in history:
                if marker:
                    continue
                view = node.service.head_object(bucket, key, root, version_id)
                chunks = [
                    c async for c in node.service.read_volume(view.volume, 0, view.volume.size)
                ]
                assert len(b"".join(chunks)) == size and view.record.etag == etag
        assert (await _read(node, "ver", "n"))[1] == b"null again"
        assert (await _read(node, "flat", "f"))[1] == b"two"
    finally:
        await _close(node)


def _id(node: Node, volume_id: str) -> str:
    def look(tx: Any) -> str:
        for record in versions.history(tx, "ver", "k"):
            if record.volume_id == volume_id:
                return record.version_id
        raise AssertionError(volume_id)

    return node.meta.read(look)


async def test_a_backup_settles_versions_removed_before_it(env: Env) -> None:  # noqa: F811
    node = await _open(env)
    root = _root(node)
    try:
        await node.service.create_bucket("ver", root, "us-east-1")
        await _versioning(node, "ver", "Enabled")
        early = await _put(node, "ver", "k", b"removed before the backup")
        kept = await _put(node, "ver", "k", b"kept")
        await node.service.delete_object("ver", "k", root, _id(node, early))
        env.clock.advance(SMALL_PUT_MARGIN + 60)
        assert node.backup is not None
        await node.backup.backup_now()
        env.clock.advance(60)
        later = await _put(node, "ver", "k", b"written after the backup")
        want = _histories(node, [("ver", "k")])
    finally:
        await _close(node)
    _lose_store(env)

    report = await asyncio.to_thread(recover, env.config)

    assert report.complete, report
    # removed for good: its record already freed on the disks (the collector punches it out,
    # so the scan finds only the two live ones) or, if still there, queued to be freed
    assert early in _garbage(env) or report.small == 2, (report.small, _garbage(env))
    node = await _open(env)
    try:
        assert _histories(node, [("ver", "k")]) == want
        assert [v[5] for v in want["ver", "k"]] == [later, kept]
    finally:
        await _close(node)


async def test_bucket_settings_come_back_from_the_disks(env: Env) -> None:  # noqa: F811
    node = await _open(env)
    root = _root(node)
    # larger than a record header may be: settings travel in the record's body
    rules = [{"id": f"rule-{i}", "prefix": "x" * 200} for i in range(1000)]
    try:
        await node.service.create_bucket("conf", root, "us-east-1")
        await _put(node, "conf", "k", b"an object: a configuration alone brings back no bucket")
        await node.service.set_bucket_setting("conf", root, "lifecycle", rules)
        await node.service.set_bucket_setting("conf", root, "cors", [{"origin": "*"}])
        await node.service.set_bucket_setting("conf", root, "cors", None)
        await node.service.set_bucket_setting("conf", root, "policy", '{"Version": "2012"}')
        want = node.service.get_bucket("conf", root).settings
    finally:
        await _close(node)
    assert set(want) == {"lifecycle", "policy"}
    _lose_store(env)

    report = await asyncio.to_thread(recover, env.config)

    assert report.complete, report
    node = await _open(env)
    try:
        assert node.service.get_bucket("conf", root).settings == want
    finally:
        await _close(node)
