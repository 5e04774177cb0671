"""Metadata recovery through the real Node: write objects of both layouts and a multipart
upload, lose the LMDB store, rebuild it from the disks (and from a backup), read it all back."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stratum.cli.recover import render
from stratum.config import Config, load_config
from stratum.maintenance.backups import (
    BACKUP_DIR,
    PREV_DIR,
    STAMP_FILE,
    MetaBackup,
    find_backups,
    write_backups,
)
from stratum.maintenance.recovery import recover
from stratum.maintenance.recovery_disks import ServerRunning
from stratum.maintenance.recovery_plan import SMALL_PUT_MARGIN
from stratum.meta import catalog
from stratum.meta.records import ObjectRecord, VolumeRecord
from stratum.meta.store import MetaStore
from stratum.node import Node
from stratum.service import amend, errors
from stratum.service.multipart import CompletedPart
from stratum.service.objects import PutOptions
from stratum.service.user_secrets import KEY_FILE
from stratum.tiering.policy import Decision
from stratum.util.clock import ManualClock

KiB, MiB = 1 << 10, 1 << 20
DISKS = 6
COPIES = 3  # metadata backups by default: the default parity_shards (2) plus one


@dataclass
class Env:
    config: Config
    clock: ManualClock
    data_dir: Path
    disks: list[Path]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.setenv("STRATUM_ACCESS_KEY", "RECOVERYROOTKEY")
    monkeypatch.setenv("STRATUM_SECRET_KEY", "recovery-root-secret")
    disks = [tmp_path / f"disk{i}" for i in range(DISKS)]
    config = load_config(
        overrides={
            "storage.data_dir": tmp_path / "data",
            "tiers.hot.disks": [str(d) for d in disks],
        }
    )
    return Env(config, ManualClock(time.time()), tmp_path / "data", disks)


async def _open(env: Env) -> Node:
    node = Node.open(env.config, env.clock)
    await node.start()
    return node


async def _close(node: Node) -> None:
    await node.stop()
    node.close()


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _root(node: Node) -> str:
    return node.root.user.canonical_id


async def _put(node: Node, bucket: str, key: str, data: bytes, **opts: Any) -> str:
    opts.setdefault("owner_id", _root(node))
    record = await node.service.put_object(bucket, key, _body(data), PutOptions(**opts))
    node.clock.advance(0.01)  # type: ignore[attr-defined]  # keeps volume ids in write order
    return record.volume_id


async def _read(node: Node, bucket: str, key: str, owner: str = "") -> tuple[Any, bytes]:
    view = node.service.head_object(bucket, key, owner or _root(node))
    chunks = [c async for c in node.service.read_volume(view.volume, 0, view.volume.size)]
    return view, b"".join(chunks)


def _lose_store(env: Env) -> None:
    shutil.rmtree(env.data_dir / "meta")


def _garbage(env: Env) -> set[str]:
    store = MetaStore(env.data_dir / "meta")
    store.open()
    try:
        return {v.volume_id for _k, v in store.read(lambda tx: catalog.pending_garbage(tx, 10_000))}
    finally:
        store.close()


async def _multipart(node: Node, bucket: str, key: str, parts: list[bytes], **opts: Any) -> str:
    opts.setdefault("owner_id", _root(node))
    put = PutOptions(**opts)
    upload = await node.multipart.create(bucket, key, put)
    done = []
    for number, data in enumerate(parts, 1):
        part = await node.multipart.upload_part(
            bucket, key, upload.upload_id, number, _body(data), put
        )
        done.append(CompletedPart(number, part.etag))
    record = await node.multipart.complete(bucket, key, upload.upload_id, done, put.owner_id)
    node.clock.advance(0.01)  # type: ignore[attr-defined]
    return record.etag


async def test_rebuilds_every_object_from_the_disks(env: Env) -> None:
    rng = random.Random(7)
    node = await _open(env)
    root = _root(node)
    want: dict[tuple[str, str], tuple[bytes, dict[str, Any]]] = {}
    old_volumes: list[str] = []
    try:
        for bucket in ("photos", "docs"):
            await node.service.create_bucket(bucket, root, "us-east-1")
        meta = {"content_type": "text/plain", "user_meta": {"author": "ann"}}
        meta |= {"headers": {"cache-control": "no-cache"}}
        old_volumes.append(await _put(node, "docs", "a.txt", b"first version", **meta))
        await _put(node, "docs", "a.txt", b"second version", **meta)
        want["docs", "a.txt"] = (b"second version", meta)
        want["docs", "empty"] = (b"", {})
        await _put(node, "docs", "empty", b"")
        big = rng.randbytes(300 * KiB)
        await _put(node, "photos", "big.bin", big, content_type="image/jpeg")
        want["photos", "big.bin"] = (big, {"content_type": "image/jpeg"})
        old_volumes.append(await _put(node, "photos", "mixed", rng.randbytes(200 * KiB)))
        await _put(node, "photos", "mixed", b"now small")  # a large version replaced by a small
        want["photos", "mixed"] = (b"now small", {})
        long_key = "deep/" + "k" * 600  # longer than LMDB's key limit
        await _put(node, "docs", long_key, b"long key")
        want["docs", long_key] = (b"long key", {})
        await _put(node, "photos", "gone", rng.randbytes(150 * KiB))
        await node.service.delete_object("photos", "gone", root)
        await node.service.collect_garbage()  # frees its shard files, as a running server would
        parts = [rng.randbytes(5 * MiB), rng.randbytes(1 * KiB)]
        mp_meta = {"content_type": "video/mp4", "user_meta": {"take": "2"}}
        mp_etag = await _multipart(node, "photos", "movie.mp4", parts, **mp_meta)
        want["photos", "movie.mp4"] = (b"".join(parts), mp_meta)
        pending = await node.multipart.create("docs", "pending", PutOptions(owner_id=root))
        part = await node.multipart.upload_part(
            "docs", "pending", pending.upload_id, 1, _body(b"unfinished"), PutOptions(root)
        )
    finally:
        await _close(node)
    _lose_store(env)

    report = await asyncio.to_thread(recover, env.config)

    assert report.complete, report
    assert (report.objects, report.multipart, report.buckets) == (len(want), 1, 2)
    assert report.buckets_rebuilt == 2 and report.backup_created is None
    assert [u.upload_id for u in report.uploads_dropped] == [pending.upload_id]
    garbage = _garbage(env)
    assert part.volume_id in garbage  # the part of the dropped upload: still in its segments
    assert old_volumes[0] not in garbage  # small, collected: its record was freed in place
    assert old_volumes[1] in garbage or not _shard_paths(env, old_volumes[1])  # large: freed
    node = await _open(env)
    try:
        assert await node.service.sweep_orphans() == 0  # every live shard file is known
        assert {b.name for b in (await node.service.list_buckets(root))[0]} == {"photos", "docs"}
        for (bucket, key), (data, meta) in want.items():
            view, got = await _read(node, bucket, key)
            assert got == data, key
            if key != "movie.mp4":
                assert view.record.etag == f'"{hashlib.md5(data).hexdigest()}"'
            assert view.record.content_type == meta.get("content_type", "binary/octet-stream")
            assert view.record.user_meta == meta.get("user_meta", {})
            assert view.record.headers == meta.get("headers", {})
            assert view.record.owner_id == root
        view, _ = await _read(node, "photos", "movie.mp4")
        assert view.record.etag == mp_etag and view.record.parts == 2
        assert view.volume.part_sizes == [5 * MiB, 1 * KiB]
        with pytest.raises(errors.NoSuchKey):
            node.service.head_object("photos", "gone", root)
        page = node.service.list_objects("docs", root)
        assert [o.key for o in page.objects] == sorted(k for b, k in want if b == "docs")
        assert await node.service.collect_garbage() >= len(garbage)
        for (bucket, key), (data, _meta) in want.items():  # the collector freed no live data
            assert (await _read(node, bucket, key))[1] == data
    finally:
        await _close(node)


async def test_backup_restores_users_and_settles_old_deletes(env: Env) -> None:
    node = await _open(env)
    root = _root(node)
    try:
        alice = node.users.add("ALICEKEY", "alice-secret", "alice", env.clock.now())
        await node.service.create_bucket("alice-b", alice.canonical_id, "eu-west-1")
        await node.service.create_bucket("keep", root, "us-east-1")
        await _put(node, "alice-b", "note", b"from alice", owner_id=alice.canonical_id)
        await _put(node, "keep", "old", b"old content")
        await _put(node, "keep", "deleted", b"deleted before the backup")
        await node.service.delete_object("keep", "deleted", root)
        await _put(node, "keep", "deleted-after", b"deleted after the backup")
        await _put(node, "keep", "large-gone", b"G" * (200 * KiB))
        frozen = VolumeRecord("c" * 32, "cold", "cold", {"v": 1}, 5, "0" * 32, 1.0)
        record = ObjectRecord("frozen", frozen.volume_id, 5, '"x"', 1.0, owner_id=root)
        await node.meta.write(lambda tx: catalog.put_volume(tx, frozen))
        await node.meta.write(lambda tx: catalog.put_object(tx, "keep", record))
        # Moved to cold: the small original lingers in its segments, the metadata says cold.
        iced = await _put(node, "keep", "iced", b"iced")
        cold = VolumeRecord(iced, "cold", "cold", {"key": "stratum/" + "f" * 32}, 4, "0" * 32, 2.0)
        await node.meta.write(lambda tx: catalog.put_volume(tx, cold))
        env.clock.advance(SMALL_PUT_MARGIN + 60)
        assert node.backup is not None
        result = await node.backup.backup_now()
        # 4+2: a copy on three disks, so that two lost still leave one
        assert result.written == tuple(env.disks[:COPIES]) and not result.failed
        assert result.counts["users"] == 1 and result.counts["buckets"] == 2
        assert (await node.backup.backup_now()).skipped  # nothing written since
        env.clock.advance(60)
        await _put(node, "keep", "old", b"newer content")
        await _put(node, "keep", "new-large", b"L" * (200 * KiB))
        await node.service.delete_object("keep", "deleted-after", root)
        await node.service.delete_object("keep", "large-gone", root)
        await node.service.collect_garbage()
        await node.service.create_bucket("later", root, "us-east-1")
        await _put(node, "later", "x", b"in a bucket made after the backup")
    finally:
        await _close(node)
    _lose_store(env)

    report = await asyncio.to_thread(recover, env.config)

    assert report.complete, report
    assert report.backup_created is not None and report.users == 1
    assert (report.buckets_from_backup, report.buckets_rebuilt) == (2, 1)
    assert (report.remote, report.gone_since_backup) == (2, 2)
    assert iced in _garbage(env), "the copy lingering in a segment goes"
    node = await _open(env)
    try:
        user = node.users.lookup("ALICEKEY")
        assert user is not None and user.canonical_id == alice.canonical_id
        bucket = node.service.get_bucket("alice-b", alice.canonical_id)
        assert bucket.region == "eu-west-1"
        assert (await _read(node, "alice-b", "note", alice.canonical_id))[1] == b"from alice"
        assert (await _read(node, "keep", "old"))[1] == b"newer content"
        assert (await _read(node, "keep", "new-large"))[1] == b"L" * (200 * KiB)
        assert (await _read(node, "later", "x"))[1] == b"in a bucket made after the backup"
        for gone in ("deleted", "large-gone"):
            with pytest.raises(errors.NoSuchKey):
                node.service.head_object("keep", gone, root)
        # A cold object is not on the local disks: it comes back as the backup recorded it.
        view = node.service.head_object("keep", "frozen", root)
        assert (view.record, view.volume) == (record, frozen)
        assert node.service.head_object("keep", "iced", root).volume == cold
        # A small object deleted after the backup stays deleted: its records were freed.
        with pytest.raises(errors.NoSuchKey):
            node.service.head_object("keep", "deleted-after", root)
    finally:
        await _close(node)


def _shard_paths(env: Env, volume_id: str) -> list[Path]:
    return sorted(p for d in env.disks for p in (d / "ec").glob(f"*/{volume_id}.*.shard"))


def _flip_payloads(env: Env, location: dict[str, Any]) -> None:
    ids = {json.loads((d / "stratum-disk.json").read_text())["disk_id"]: d for d in env.disks}
    for disk_id, segment, offset in location["replicas"]:
        path = ids[disk_id] / "seg" / f"{segment:010d}.seg"
        with open(path, "r+b") as f:
            f.seek(offset + 56 + location["meta_size"])
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))


async def test_reports_what_the_disks_cannot_give_back(env: Env) -> None:
    node = await _open(env)
    root = _root(node)
    try:
        alice = node.users.add("ALICEKEY", "alice-secret", "alice", env.clock.now())
        await node.service.create_bucket("b", root, "us-east-1")
        await node.service.create_bucket("a-b", alice.canonical_id, "us-east-1")
        await _put(node, "a-b", "x", b"alice's", owner_id=alice.canonical_id)
        large = await _put(node, "b", "half-gone", b"H" * (300 * KiB))
        await _put(node, "b", "rotten", b"R" * 1000)
        rotten = node.service.head_object("b", "rotten", root).volume.location
        await _put(node, "b", "fine", b"fine")
    finally:
        await _close(node)
    _lose_store(env)
    for path in _shard_paths(env, large)[:3]:  # 3 of 6 shards gone: 4 needed
        path.unlink()
    _flip_payloads(env, rotten)

    dry = await asyncio.to_thread(recover, env.config, dry_run=True)
    assert not (env.data_dir / "meta").exists(), "a dry run writes nothing"
    report = await asyncio.to_thread(recover, env.config)

    assert not report.complete and not dry.complete
    assert [(x.name, x.restored) for x in report.unreadable] == [("b/half-gone", True)]
    assert "3 of 6 shards intact, 4 needed" in report.unreadable[0].why
    assert [(x.name, x.restored) for x in report.damaged] == [("b/rotten", False)]
    assert report.lost_owners == {alice.canonical_id: ["a-b"]}
    node = await _open(env)
    try:
        assert (await _read(node, "b", "fine"))[1] == b"fine"
        with pytest.raises(errors.NoSuchKey):
            node.service.head_object("b", "rotten", root)
        # The unreadable object keeps its key (and its shards survive the start-up sweep).
        assert node.service.head_object("b", "half-gone", root).volume.volume_id == large
        assert len(_shard_paths(env, large)) == 3
        # The same access key alone does not inherit the lost owner's bucket; the owner id
        # the report names does.
        stranger = node.users.add("ALICEKEY", "new-secret", "alice", env.clock.now())
        with pytest.raises(errors.AccessDenied):
            node.service.head_object("a-b", "x", stranger.canonical_id)
        node.users.meta.write_sync(lambda tx: catalog.delete_user(tx, "ALICEKEY"))
        lost_id = next(iter(report.lost_owners))
        alice2 = node.users.add("ALICEKEY", "new-secret", "alice", 0.0, canonical_id=lost_id)
        assert (await _read(node, "a-b", "x", alice2.canonical_id))[1] == b"alice's"
    finally:
        await _close(node)


async def test_users_come_back_sealed_and_the_report_says_when_their_key_is_missing(
    env: Env,
) -> None:
    node = await _open(env)
    try:
        alice = node.users.add("ALICEKEY", "alice-secret", "alice", env.clock.now())
        await node.service.create_bucket("alice-b", alice.canonical_id, "us-east-1")
        assert node.backup is not None
        assert not (await node.backup.backup_now()).failed
    finally:
        await _close(node)
    copies = find_backups(env.disks)
    assert len(copies) == COPIES
    for copy in copies:  # a disk carried off holds no working key
        assert b"alice-secret" not in (copy.path / "data.mdb").read_bytes()
    _lose_store(env)
    key = env.data_dir / KEY_FILE
    saved = key.read_bytes()
    key.unlink()

    report = await asyncio.to_thread(recover, env.config)

    assert report.users == 1 and report.users_locked == ["ALICEKEY"]
    assert not report.complete
    text = render(report, now=time.time())
    assert "users who cannot sign in (1)" in text
    assert f"{key} is missing" in text and "Put that file back" in text
    key.write_bytes(saved)
    key.chmod(0o600)
    node = await _open(env)
    try:
        user = node.users.lookup("ALICEKEY")
        assert user is not None and user.secret_key == "alice-secret"
        assert user.canonical_id == alice.canonical_id
    finally:
        await _close(node)


async def test_refuses_while_a_server_holds_the_disks(env: Env) -> None:
    node = await _open(env)
    try:
        with pytest.raises(ServerRunning, match=r"seg/\.lock"):
            await asyncio.to_thread(recover, env.config, dry_run=True)
    finally:
        await _close(node)


def test_backup_replaces_the_previous_copy_atomically(tmp_path: Path, store: MetaStore) -> None:
    disks = [tmp_path / f"d{i}" for i in range(3)]
    for disk in disks[:2]:
        disk.mkdir()
        (disk / "stratum-disk.json").write_text("{}")
    first = write_backups(store, disks, 100.0, 1)
    assert first.written == tuple(disks[:2]) and str(disks[2]) in first.failed
    assert not disks[2].exists(), "a missing disk is never created"
    # A crash between the renames of a later run: the previous copy is put back first.
    os.rename(disks[0] / BACKUP_DIR, disks[0] / PREV_DIR)
    (disks[0] / f"{BACKUP_DIR}.tmp-5").mkdir()  # an incomplete copy: no stamp
    assert [c.created for c in find_backups(disks)] == [100.0, 100.0]
    second = write_backups(store, disks, 200.0, 2)
    assert second.written == tuple(disks[:2])
    for disk in disks[:2]:
        assert sorted(p.name for p in disk.iterdir()) == [BACKUP_DIR, "stratum-disk.json"]
        stamp = json.loads((disk / BACKUP_DIR / STAMP_FILE).read_text())
        assert stamp["created"] == 200.0 and stamp["version"] == 1 and stamp["volumes"] == 0
    assert [c.created for c in find_backups(disks)] == [200.0, 200.0]


async def test_backups_follow_the_injected_clock(tmp_path: Path, store: MetaStore) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "stratum-disk.json").write_text("{}")
    clock = ManualClock(1000.0)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        backup = MetaBackup(store, [disk], clock, interval=10, executor=pool, first_delay=0)
        await backup.start()
        try:
            await _until(lambda: backup.last is not None)
            assert backup.last is not None and backup.last.created == 1000.0
            await store.write(lambda tx: tx.put("info", b"x", b"1"))
            await asyncio.sleep(1.5)  # a tick or more: not due yet on the clock
            assert backup.last.created == 1000.0
            clock.advance(10)
            await _until(lambda: backup.last is not None and backup.last.created == 1010.0)
        finally:
            await backup.stop()
    assert find_backups([disk])[0].created == 1010.0


async def _until(done: Callable[[], bool]) -> None:
    for _ in range(250):  # up to 5 s
        if done():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_a_disk_lost_with_the_store_keeps_its_place(env: Env) -> None:
    node = await _open(env)
    root = _root(node)
    try:
        await node.service.create_bucket("b", root, "us-east-1")
        large = await _put(node, "b", "large", b"Q" * (300 * KiB))
        await _put(node, "b", "small", b"q" * 100)
        assert node.backup is not None
        await node.backup.backup_now()
        ident = json.loads((env.disks[0] / "stratum-disk.json").read_text())["disk_id"]
    finally:
        await _close(node)
    _lose_store(env)
    held = [p for p in _shard_paths(env, large) if p.is_relative_to(env.disks[0])]
    assert len(held) == 1  # six disks, six shards
    shutil.rmtree(env.disks[0])

    report = await asyncio.to_thread(recover, env.config)

    assert report.objects == 2 and not report.unreadable and not report.damaged
    assert not report.complete and any(ident in p for p in report.disk_problems)
    node = await _open(env)  # the empty directory takes its old id and is refilled
    try:
        volume = node.service.head_object("b", "large", root).volume
        assert ident in volume.location["disks"]
        await node.maintenance.scrub()
        assert all(p.exists() for p in held)
        for key, data in (("large", b"Q" * (300 * KiB)), ("small", b"q" * 100)):
            assert (await _read(node, "b", key))[1] == data
    finally:
        await _close(node)


async def test_volumes_moved_between_tiers_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tier move writes the data under a storage id of its own whose header names the
    volume it copies (``moved_from``); the original is freed, small records and the
    manifest included. A moved multipart object therefore comes back with its content and
    S3 metadata but not its multipart ETag, which only the manifest recorded."""
    monkeypatch.setenv("STRATUM_ACCESS_KEY", "RECOVERYROOTKEY")
    monkeypatch.setenv("STRATUM_SECRET_KEY", "recovery-root-secret")
    shards = {
        f"tiers.{t}.{s}_shards": n for t in ("hot", "warm") for s, n in (("data", 2), ("parity", 1))
    }
    config = load_config(
        overrides={
            "storage.data_dir": tmp_path / "data",
            "tiers.hot.disks": [str(tmp_path / f"h{i}") for i in range(3)],
            "tiers.warm.disks": [str(tmp_path / f"w{i}") for i in range(3)],
            "tiering.enabled": False,
            **shards,
        }
    )
    env = Env(config, ManualClock(time.time()), tmp_path / "data", [])
    rng = random.Random(3)
    node = await _open(env)
    root = _root(node)
    try:
        await node.service.create_bucket("b", root, "us-east-1")
        big, small = rng.randbytes(300 * KiB), rng.randbytes(KiB)
        await _put(node, "b", "big", big, content_type="image/png", user_meta={"a": "1"})
        await _put(node, "b", "small", small, content_type="text/plain")
        parts = [rng.randbytes(5 * MiB), rng.randbytes(KiB)]
        etag = await _multipart(node, "b", "mp", parts, content_type="video/mp4")
        # what a version is written with beyond its metadata: its lock, its ACL
        await node.service.create_bucket("vault", root, "us-east-1", object_lock=True)
        held = {"lock_mode": "GOVERNANCE", "lock_until": 4e9, "legal_hold": True}
        acl = {"grants": [{"p": "READ"}]}
        await _put(node, "vault", "held", big, amendable=held, acl=acl)
        logical = {}
        for bucket, key in (("b", "big"), ("b", "small"), ("b", "mp"), ("vault", "held")):
            volume = node.service.head_object(bucket, key, root).volume
            logical[key] = volume.volume_id
            assert await node.tiering.mover.move(volume, Decision("warm", "test", {}))
        await node.service.collect_garbage()
        want_held = node.service.head_object("vault", "held", root).record
    finally:
        await _close(node)
    _lose_store(env)

    report = await asyncio.to_thread(recover, config)

    assert (report.objects, report.multipart, report.uploads_dropped) == (4, 0, [])
    assert report.garbage == 0  # nothing of the originals is left to find
    # The large original is freed; the moved copy's header carries the S3 metadata.
    assert report.reduced == [] and report.complete
    node = await _open(env)
    try:
        assert await node.service.sweep_orphans() == 0
        for key, data in (("big", big), ("small", small), ("mp", b"".join(parts))):
            view, got = await _read(node, "b", key)
            assert got == data and view.volume.tier == "warm", key
            assert view.record.volume_id == view.volume.volume_id == logical[key]
        assert node.service.head_object("b", "small", root).record.content_type == "text/plain"
        view = node.service.head_object("b", "mp", root)
        assert view.record.content_type == "video/mp4" and etag.endswith('-2"')
        assert view.record.etag == f'"{hashlib.md5(b"".join(parts)).hexdigest()}"'
        # a moved version keeps its lock (no one may delete it early), ACL and version
        got = node.service.head_object("vault", "held", root).record
        assert (
            amend.fields_of(got) == amend.fields_of(want_held) == {**held, "tags": {}, "acl": acl}
        )
        assert (got.version_id, got.last_modified) == (
            want_held.version_id,
            want_held.last_modified,
        )
    finally:
        await _close(node)
