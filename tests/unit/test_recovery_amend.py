"""Changes made to versions after they were written (lock fields, legal hold, tags, ACL)
come back from the disks alone: the newest change of each version wins, superseded change
records and those of versions removed for good are garbage, and a backup taken before a
change does not undo it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stratum.maintenance.recovery import recover
from stratum.meta import catalog, versions
from stratum.meta.records import BucketRecord, ObjectRecord
from stratum.node import Node
from stratum.service import amend
from stratum.service.objects import PutOptions
from tests.unit import test_recovery as rec
from tests.unit.test_recovery import Env, env  # noqa: F401 - env: the fixture
from tests.unit.test_recovery_versions import _versioning

FAR = 4_000_000_000.0


def _fields(node: Node, bucket: str, key: str) -> list[tuple[str, dict[str, Any]]]:
    def look(tx: Any) -> list[tuple[str, dict[str, Any]]]:
        return [(r.version_id, amend.fields_of(r)) for r in versions.history(tx, bucket, key)]

    return node.meta.read(look)


def _amend_id(node: Node, bucket: str, key: str, version_id: str) -> str:
    record = node.meta.read(lambda tx: versions.find(tx, bucket, key, version_id))
    assert record is not None
    return str(record.amend_record.get("volume_id", ""))


async def test_changes_of_versions_come_back_from_the_disks(env: Env) -> None:  # noqa: F811
    node = await rec._open(env)
    root = rec._root(node)
    superseded: list[str] = []
    try:
        await node.service.create_bucket("ver", root, "us-east-1")
        await node.service.create_bucket("flat", root, "us-east-1")
        await _versioning(node, "ver", "Enabled")
        await rec._put(node, "ver", "k", b"old")
        await rec._put(node, "ver", "k", b"current")
        await rec._put(node, "ver", "gone", b"G" * (300 * rec.KiB))  # erasure-coded: truly freed
        await rec._put(node, "flat", "f", b"one")
        old_id = _fields(node, "ver", "k")[1][0]
        # several changes of one noncurrent version: the last one wins
        first = await node.service.amend_version(
            "ver", "k", old_id, root, amend.setting(lock_mode="GOVERNANCE", lock_until=FAR)
        )
        superseded.append(first.amend_record["volume_id"])
        env.clock.advance(0.01)
        await node.service.amend_version(
            "ver", "k", old_id, root, amend.setting(lock_mode="COMPLIANCE", legal_hold=True)
        )
        # the current version, by no version id, in the versioned bucket and the flat one
        await node.service.amend_version(
            "ver", "k", None, root, amend.setting(tags={"a": "1"}, acl={"grants": [{"p": "READ"}]})
        )
        await node.service.amend_version("flat", "f", None, root, amend.setting(tags={"t": "v"}))
        # a version changed, then removed for good: its change record is freed with it
        gone = await node.service.amend_version(
            "ver", "gone", None, root, amend.setting(tags={"x": "y"})
        )
        superseded.append(gone.amend_record["volume_id"])
        await node.service.delete_object("ver", "gone", root, gone.version_id)
        await node.service.collect_garbage()
        unchanged = await node.service.amend_version(
            "ver", "k", None, root, amend.setting(tags={"a": "1"})
        )
        want = _fields(node, "ver", "k")
        flat = _fields(node, "flat", "f")
        assert (
            unchanged.amend_record == node.service.head_object("ver", "k", root).record.amend_record
        )
        assert node.service.head_object("ver", "k", root).record.tags == {"a": "1"}
    finally:
        await rec._close(node)
    assert want[1][1]["lock_mode"] == "COMPLIANCE" and want[1][1]["lock_until"] == FAR
    assert want[1][1]["legal_hold"] and want[0][1]["acl"] == {"grants": [{"p": "READ"}]}
    assert flat[0][1]["tags"] == {"t": "v"}
    rec._lose_store(env)

    report = await asyncio.to_thread(recover, env.config)

    assert report.complete, report
    assert report.unnamed == 0
    left = rec._garbage(env)  # superseded records the collector had not freed yet: garbage
    node = await rec._open(env)
    try:
        assert _fields(node, "ver", "k") == want
        assert _fields(node, "flat", "f") == flat
        assert _fields(node, "ver", "gone") == []
        in_use = {_amend_id(node, "ver", "k", v) for v, _f in want} - {""}
        assert len(in_use) == 2 and not in_use & (set(superseded) | left)
        # the current version's record in ``objects`` has its changes too
        assert node.service.head_object("ver", "k", root).record.tags == {"a": "1"}
        # and the next change frees the record recovery found in force
        held = node.service.head_object("flat", "f", root).record.amend_record["volume_id"]
        await node.service.amend_version("flat", "f", None, root, amend.setting(tags={}))
        queued = node.meta.read(lambda tx: catalog.pending_garbage(tx, 10_000))
        assert held in {volume.volume_id for _key, volume in queued}
    finally:
        await rec._close(node)


async def _rebuilt(env: Env) -> Node:  # noqa: F811
    """The store lost and rebuilt from the disks (and its backup), open again."""
    rec._lose_store(env)
    assert (await asyncio.to_thread(recover, env.config)).complete
    return await rec._open(env)


async def test_a_backup_older_than_a_change_does_not_undo_it(env: Env) -> None:  # noqa: F811
    node = await rec._open(env)
    root = rec._root(node)
    try:
        await node.service.create_bucket("ver", root, "us-east-1")
        await _versioning(node, "ver", "Enabled")
        await rec._put(node, "ver", "k", b"data")
        await node.service.amend_version("ver", "k", None, root, amend.setting(legal_hold=True))
        assert node.backup is not None
        await node.backup.backup_now()
        env.clock.advance(60)
        await node.service.amend_version("ver", "k", None, root, amend.setting(legal_hold=False))
        want = _fields(node, "ver", "k")
    finally:
        await rec._close(node)
    node = await _rebuilt(env)
    try:
        assert _fields(node, "ver", "k") == want
        assert not want[0][1]["legal_hold"]
    finally:
        await rec._close(node)


async def test_locks_set_at_creation_come_back_from_the_disks(env: Env) -> None:  # noqa: F811
    node = await rec._open(env)
    root = rec._root(node)
    try:
        await node.service.create_bucket("vault", root, "us-east-1", object_lock=True)

        def default(record: BucketRecord) -> bool:
            record.lock_default = {"mode": "COMPLIANCE", "days": 30}
            return True

        await node.service.configure_bucket("vault", root, default)
        await rec._put(node, "vault", "by-default", b"d")
        held = {"lock_mode": "GOVERNANCE", "lock_until": FAR, "legal_hold": True}
        await rec._put(node, "vault", "asked", b"a", amendable=held)
        await rec._multipart(
            node, "vault", "parts", [b"M" * (5 * rec.MiB), b"tail"], amendable=held
        )
        want = {k: _fields(node, "vault", k) for k in ("by-default", "asked", "parts")}
    finally:
        await rec._close(node)
    assert want["by-default"][0][1]["lock_mode"] == "COMPLIANCE"
    assert want["asked"][0][1] == {**want["asked"][0][1], **held}
    assert want["parts"][0][1] == {**want["parts"][0][1], **held}
    node = await _rebuilt(env)
    try:
        assert {k: _fields(node, "vault", k) for k in want} == want
        bucket = node.service.get_bucket("vault", root)
        assert bucket.object_lock and bucket.versioning == "Enabled"
        assert bucket.lock_default == {"mode": "COMPLIANCE", "days": 30}
    finally:
        await rec._close(node)


def test_only_amendable_fields_are_set() -> None:
    """Size, ETag and the rest are the data's, fixed when it was written."""
    with pytest.raises(ValueError, match="etag"):
        amend.setting(tags={}, etag='"x"')


async def test_metadata_replaced_in_place_keeps_tags_and_acl_on_disk(env: Env) -> None:  # noqa: F811
    """CopyObject onto itself (replace_metadata) sets the tags and ACL its request names: the
    record of an earlier change goes to the collector, and what recovery finds on the disks is
    what was set last, also when the object is changed again after the copy."""
    node = await rec._open(env)
    node.service.garbage.gc_grace = 3600.0  # on the test's clock: the queue keeps what it got
    root = rec._root(node)
    acl = {"grants": [{"p": "READ"}]}
    try:
        await node.service.create_bucket("flat", root, "us-east-1")
        await rec._put(node, "flat", "replaced", b"r", tags={"at": "write"})
        await rec._put(node, "flat", "changed-after", b"c", tags={"at": "write"})
        for key in ("replaced", "changed-after"):
            await node.service.amend_version(
                "flat", key, None, root, amend.setting(tags={"at": "tag"})
            )
        stale = {
            key: node.service.head_object("flat", key, root).record.amend_record["volume_id"]
            for key in ("replaced", "changed-after")
        }
        for key, tags in (("replaced", {"at": "copy"}), ("changed-after", {"at": "tag"})):
            view = node.service.head_object("flat", key, root)
            opts = PutOptions(owner_id=root, content_type="text/plain", tags=tags, acl=acl)
            await node.service.replace_metadata("flat", key, opts, view.record.volume_id)
        await node.service.amend_version(
            "flat", "changed-after", None, root, amend.setting(tags={"at": "later"})
        )
        want = {k: _fields(node, "flat", k) for k in ("replaced", "changed-after")}
        queued = {v.volume_id for _k, v in node.meta.read(lambda tx: catalog.pending_garbage(tx))}
    finally:
        await rec._close(node)
    assert want["replaced"][0][1]["tags"] == {"at": "copy"}
    assert want["changed-after"][0][1]["tags"] == {"at": "later"}
    assert want["replaced"][0][1]["acl"] == acl
    assert set(stale.values()) <= queued
    node = await _rebuilt(env)
    try:
        assert {k: _fields(node, "flat", k) for k in want} == want
    finally:
        await rec._close(node)


async def test_metadata_replaced_in_place_comes_back_from_the_disks(env: Env) -> None:  # noqa: F811
    """CopyObject onto itself with new metadata and no change of tags or ACL: the new content
    type, user metadata, headers and time come back from the disks, not the data header's."""
    node = await rec._open(env)
    root = rec._root(node)
    try:
        await node.service.create_bucket("flat", root, "us-east-1")
        await rec._put(node, "flat", "doc", b"d")
        view = node.service.head_object("flat", "doc", root)
        env.clock.advance(90)
        opts = PutOptions(
            owner_id=root,
            content_type="text/csv",
            user_meta={"rev": "2"},
            headers={"Cache-Control": "no-cache"},
            tags=dict(view.record.tags),
            acl=dict(view.record.acl),
        )
        await node.service.replace_metadata("flat", "doc", opts, view.record.volume_id)
        want = node.service.head_object("flat", "doc", root).record
    finally:
        await rec._close(node)
    assert want.content_type == "text/csv" and want.last_modified > view.record.last_modified
    node = await _rebuilt(env)
    try:
        got = node.service.head_object("flat", "doc", root).record
        assert amend.metadata_of(got) == amend.metadata_of(want)
        assert got.user_meta == {"rev": "2"} and got.headers == {"Cache-Control": "no-cache"}
    finally:
        await rec._close(node)


def test_a_format_1_amend_record_leaves_the_metadata_alone() -> None:
    record = ObjectRecord(key="k", volume_id="v", size=1, etag='"e"', last_modified=5.0)
    record.content_type = "image/png"
    body = b'{"fields": {"tags": {"a": "b"}, "legal_hold": true}}'
    assert amend.apply_payload(record, body)
    assert record.tags == {"a": "b"} and record.legal_hold
    assert record.content_type == "image/png" and record.last_modified == 5.0
    bad = b'{"fields": {}, "metadata": {"user_meta": {"n": 1}, "content_type": "text/x"}}'
    assert amend.apply_payload(record, bad)
    assert record.user_meta == {} and record.content_type == "text/x"
