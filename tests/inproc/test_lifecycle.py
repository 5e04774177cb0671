"""The lifecycle worker on a real node, months on an injected clock: expirations by prefix,
tag and size, noncurrent versions beyond NewerNoncurrentVersions, expired delete markers,
aborted uploads, locked versions kept, space freed, and a pass resumed after a stop."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratum.cli.tiering import render_explanation
from stratum.config import load_config
from stratum.maintenance.lifecycle import PassReport, scopes
from stratum.meta import versions
from stratum.meta.records import BucketRecord
from stratum.meta.store import Tx
from stratum.node import Node
from stratum.s3.lifecycle_ops import parse_lifecycle
from stratum.service import lifecycle
from stratum.service.objects import PutOptions
from stratum.tiering.policy import Usage
from stratum.util.clock import ManualClock

DAY = 86400.0
START = 1_800_000_000.0


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]


@pytest.fixture(params=[False])
async def node(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Node]:
    """A node with three hot disks (and three warm ones when the parameter says so)."""
    overrides: dict[str, object] = {
        "storage.data_dir": tmp_path / "data",
        "tiers.hot.disks": [tmp_path / f"h{i}" for i in range(3)],
        "tiers.hot.data_shards": 2,
        "tiers.hot.parity_shards": 1,
    }
    if request.param:
        overrides.update(
            {
                "tiers.warm.disks": [tmp_path / f"w{i}" for i in range(3)],
                "tiers.warm.data_shards": 2,
                "tiers.warm.parity_shards": 1,
            }
        )
    n = Node.open(load_config(overrides=overrides), ManualClock(START))
    n.tiering._capacity = lambda tier: Usage(used=1, capacity=100)  # not the host's fill
    await n.service.start()
    await n.multipart.start()
    await n.service.create_bucket("bkt", "owner", "us-east-1")
    yield n
    await n.multipart.stop()
    await n.service.stop()
    for tier in n.tiers.values():
        await tier.close()
    n.close()


def clock(node: Node) -> ManualClock:
    assert isinstance(node.clock, ManualClock)
    return node.clock


async def put(node: Node, key: str, data: bytes = b"x", tags: dict[str, str] | None = None) -> str:
    opts = PutOptions(owner_id="owner", tags=tags or {})
    record = await node.service.put_object("bkt", key, _chunks(data), opts)
    return record.version_id


async def rules(node: Node, xml: str) -> None:
    body = f"<LifecycleConfiguration>{xml}</LifecycleConfiguration>".encode()
    await node.service.set_bucket_setting("bkt", "owner", lifecycle.SETTING, parse_lifecycle(body))


async def enable_versioning(node: Node) -> None:
    def enable(record: BucketRecord) -> bool:
        record.versioning = "Enabled"
        return True

    await node.service.configure_bucket("bkt", "owner", enable)


def keys(node: Node) -> list[str]:
    return [o.key for o in node.service.list_objects("bkt", "owner").objects]


def all_versions(node: Node) -> list[tuple[str, str, bool]]:
    page = node.service.list_versions("bkt", "owner")
    return [(r.key, r.version_id, r.delete_marker) for r, _latest in page.entries]


async def test_months_of_daily_writes_expire_by_prefix(node: Node) -> None:
    """Logs kept 30 days, scratch files 1: each day's pass leaves exactly the objects whose
    expiry (write time plus the rule's days, rounded up to midnight UTC) is still ahead."""
    await rules(
        node,
        "<Rule><ID>logs</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status>"
        "<Expiration><Days>30</Days></Expiration></Rule>"
        "<Rule><ID>tmp</ID><Prefix>tmp/</Prefix><Status>Enabled</Status>"
        "<Expiration><Days>1</Days></Expiration></Rule>",
    )
    written: dict[str, float] = {}
    for step in range(120):  # 108 days, a pass every 0.9 day: at every time of day
        for key in (f"logs/{step:03d}", f"tmp/{step:03d}", f"keep/{step:03d}"):
            written[key] = clock(node).now()
            await put(node, key)
        clock(node).advance(0.9 * DAY)
        report = await node.lifecycle.run_pass()
        now = clock(node).now()
        assert report.examined == len([k for k in keys(node) if not k.startswith("keep/")]) + (
            report.expired
        ), "only the rules' prefixes are walked"

        def alive(key: str, now: float = now) -> bool:
            days = 30 if key.startswith("logs/") else 1 if key.startswith("tmp/") else None
            if days is None:
                return True
            return math.ceil((written[key] + days * DAY) / DAY) * DAY > now

        assert keys(node) == sorted(k for k in written if alive(k)), f"step {step}"
    logs = [k for k in keys(node) if k.startswith("logs/")]
    assert 30 <= len(logs) <= 35 and logs[-1] == "logs/119"
    assert [k for k in keys(node) if k.startswith("tmp/")] in (["tmp/119"], ["tmp/118", "tmp/119"])
    assert len([k for k in keys(node) if k.startswith("keep/")]) == 120
    assert node.lifecycle.last is not None and node.lifecycle.last.buckets == ["bkt"]


async def test_filters_by_tag_and_size(node: Node) -> None:
    await rules(
        node,
        "<Rule><ID>tagged</ID><Filter><And><Prefix></Prefix>"
        "<Tag><Key>class</Key><Value>temp</Value></Tag>"
        "<ObjectSizeGreaterThan>10</ObjectSizeGreaterThan></And></Filter>"
        "<Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"
        "<Rule><ID>off</ID><Prefix></Prefix><Status>Disabled</Status>"
        "<Expiration><Days>1</Days></Expiration></Rule>",
    )
    await put(node, "temp-big", b"y" * 100, {"class": "temp"})
    await put(node, "temp-small", b"y", {"class": "temp"})
    await put(node, "other-big", b"y" * 100, {"class": "keep"})
    clock(node).advance(3 * DAY)
    report = await node.lifecycle.run_pass()
    assert keys(node) == ["other-big", "temp-small"]
    assert (report.examined, report.expired) == (3, 1)


async def test_noncurrent_versions_beyond_the_newest_go(node: Node) -> None:
    await enable_versioning(node)
    ids = [await put(node, "k", f"v{i}".encode()) for i in range(10)]
    await rules(
        node,
        "<Rule><ID>nc</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status>"
        "<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
        "<NewerNoncurrentVersions>5</NewerNoncurrentVersions></NoncurrentVersionExpiration>"
        "</Rule>",
    )
    await node.lifecycle.run_pass()
    assert len(all_versions(node)) == 10  # not noncurrent for a day yet
    clock(node).advance(2 * DAY)
    report = await node.lifecycle.run_pass()
    assert report.removed == 4
    assert [v for _k, v, _m in all_versions(node)] == list(reversed(ids))[:6]


async def test_expiration_in_a_versioned_bucket_leaves_a_marker_then_removes_it(
    node: Node,
) -> None:
    await enable_versioning(node)
    first = await put(node, "doc")
    await rules(
        node,
        "<Rule><ID>exp</ID><Prefix></Prefix><Status>Enabled</Status>"
        "<Expiration><Days>5</Days></Expiration>"
        "<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
        "</NoncurrentVersionExpiration></Rule>",
    )
    clock(node).advance(6 * DAY)
    report = await node.lifecycle.run_pass()
    assert report.expired == 1
    assert keys(node) == []
    listed = all_versions(node)
    assert [(k, m) for k, _v, m in listed] == [("doc", True), ("doc", False)]
    assert listed[1][1] == first
    clock(node).advance(2 * DAY)
    await node.lifecycle.run_pass()  # the noncurrent version goes
    assert [m for _k, _v, m in all_versions(node)] == [True]
    clock(node).advance(6 * DAY)
    await node.lifecycle.run_pass()  # the marker, now alone and 5 days old, goes
    assert all_versions(node) == []


async def test_expired_object_delete_marker_goes_at_once(node: Node) -> None:
    await enable_versioning(node)
    await put(node, "gone")
    await node.service.delete_object("bkt", "gone", "owner")
    await put(node, "kept")
    await node.service.delete_object("bkt", "kept", "owner")
    await rules(
        node,
        "<Rule><ID>dm</ID><Prefix>gone</Prefix><Status>Enabled</Status>"
        "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"
        "</Rule><Rule><ID>nc</ID><Prefix>gone</Prefix><Status>Enabled</Status>"
        "<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
        "</NoncurrentVersionExpiration></Rule>",
    )
    clock(node).advance(2 * DAY)
    await node.lifecycle.run_pass()  # the noncurrent version of "gone" goes
    await node.lifecycle.run_pass()  # then its marker, alone now
    assert [(k, m) for k, _v, m in all_versions(node)] == [("kept", True), ("kept", False)]


async def test_a_locked_version_survives_every_rule(node: Node) -> None:
    await enable_versioning(node)
    held = await put(node, "k", b"held")
    retained = await put(node, "k", b"retained")
    await put(node, "k", b"current")

    def lock(tx: Tx) -> None:
        for version_id, fields in (
            (held, {"legal_hold": True}),
            (retained, {"lock_mode": "COMPLIANCE", "lock_until": START + 400 * DAY}),
        ):
            record = versions.find(tx, "bkt", "k", version_id)
            assert record is not None
            versions.add(tx, "bkt", dataclasses.replace(record, **fields))

    await node.service.meta.write(lock)
    await rules(
        node,
        "<Rule><ID>all</ID><Prefix></Prefix><Status>Enabled</Status>"
        "<Expiration><Days>1</Days></Expiration>"
        "<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
        "</NoncurrentVersionExpiration></Rule>",
    )
    for _day in range(10):
        clock(node).advance(3 * DAY)
        await node.lifecycle.run_pass()
    listed = all_versions(node)
    assert [(v, m) for _k, v, m in listed if not m] == [(retained, False), (held, False)]
    assert node.lifecycle.last is not None and node.lifecycle.last.locked == 2
    clock(node).advance(400 * DAY)  # retention ends; the legal hold stays
    await node.lifecycle.run_pass()
    assert [v for _k, v, m in all_versions(node) if not m] == [held]


async def test_incomplete_uploads_are_aborted(node: Node) -> None:
    await rules(
        node,
        "<Rule><ID>mpu</ID><Prefix>a/</Prefix><Status>Enabled</Status>"
        "<AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation>"
        "</AbortIncompleteMultipartUpload></Rule>",
    )
    opts = PutOptions(owner_id="owner")
    doomed = await node.multipart.create("bkt", "a/big", opts)
    await node.multipart.upload_part("bkt", "a/big", doomed.upload_id, 1, _chunks(b"p" * 10), opts)
    await node.multipart.create("bkt", "b/other", opts)
    clock(node).advance(DAY)
    assert (await node.lifecycle.run_pass()).aborted == 0
    clock(node).advance(2 * DAY)
    assert (await node.lifecycle.run_pass()).aborted == 1
    assert [u.key for u in (await node.multipart.list_uploads("bkt", "owner")).uploads] == [
        "b/other"
    ]


def _stored_bytes(node: Node) -> int:
    return sum(
        f.stat().st_size
        for disk in node.tiers["hot"].disks
        for f in Path(disk.path).rglob("*")
        if f.suffix == ".shard"  # erasure-coded data: a large object's
    )


async def test_expired_objects_give_their_space_back(node: Node) -> None:
    await rules(
        node,
        "<Rule><ID>big</ID><Prefix>big/</Prefix><Status>Enabled</Status>"
        "<Expiration><Days>1</Days></Expiration></Rule>",
    )
    before = _stored_bytes(node)
    for i in range(4):
        await put(node, f"big/{i}", os.urandom(600_000))
    grown = _stored_bytes(node) - before
    assert grown > 4 * 600_000
    clock(node).advance(2 * DAY)
    await node.lifecycle.run_pass()
    await node.service.collect_garbage()
    assert _stored_bytes(node) - before < grown / 100


class Stop(Exception):
    pass


async def stop_at_first_wait(_seconds: float) -> None:
    raise Stop


async def no_wait(_seconds: float) -> None:
    return None


async def stopped_then_finished(node: Node, page: int, xml: str) -> PassReport:
    """Twenty-five objects due under ``xml``'s rules; a pass stopped at its first wait
    between pages (as a restart would), then one run to the end: the second's report."""
    await rules(node, xml)
    for i in range(25):
        await put(node, f"k{i:02d}")
    clock(node).advance(2 * DAY)
    worker = node.lifecycle
    worker.page = page
    worker._sleep = stop_at_first_wait
    with pytest.raises(Stop):
        await worker.run_pass()
    assert node.service.meta.read(lambda tx: tx.get("info", b"lifecycle-pass")) is not None
    worker._sleep = no_wait
    report = await worker.run_pass()
    assert node.service.meta.read(lambda tx: tx.get("info", b"lifecycle-pass")) is None
    return report


async def test_a_stopped_pass_resumes_where_it_stood(node: Node) -> None:
    report = await stopped_then_finished(
        node,
        10,
        "<Rule><ID>all</ID><Prefix></Prefix><Status>Enabled</Status>"
        "<Expiration><Days>1</Days></Expiration></Rule>",
    )
    assert report.examined == 15  # from where the first pass stopped, not from the start
    assert keys(node) == []


@pytest.mark.parametrize("node", [True], indirect=True)
async def test_a_transition_moves_objects_within_one_pass_and_explain_names_it(
    node: Node,
) -> None:
    await rules(
        node,
        "<Rule><ID>to-warm</ID><Filter><Prefix>archive/</Prefix></Filter><Status>Enabled</Status>"
        "<Transition><Days>7</Days><StorageClass>STANDARD_IA</StorageClass></Transition></Rule>",
    )
    data = os.urandom(300_000)
    await put(node, "archive/a", data)
    await put(node, "live/b", data)
    for _day in range(3):  # read every day: the idle rule alone would never move them
        clock(node).advance(DAY)
        for key in ("archive/a", "live/b"):
            node.service.record_access(
                node.service.head_object("bkt", key, "owner").volume.volume_id
            )
        await node.service.flush_access()
        await node.tiering.run_pass()
    assert node.service.head_object("bkt", "archive/a", "owner").volume.tier == "hot"
    clock(node).advance(5 * DAY)
    pending = node.tiering.explain("bkt", "archive/a")
    assert pending["pinned_by"] == "lifecycle:to-warm"
    assert pending["pending"]["rule"] == "pin:lifecycle:to-warm"
    assert "pinned to   warm by lifecycle:to-warm" in render_explanation(pending)
    report = await node.tiering.run_pass()
    assert report.moved == 1
    view = node.service.head_object("bkt", "archive/a", "owner")
    assert view.volume.tier == "warm"
    chunks = [c async for c in node.service.read_volume(view.volume, 0, view.record.size)]
    assert b"".join(chunks) == data
    assert node.tiering.explain("bkt", "archive/a")["placed_by"]["rule"] == "pin:lifecycle:to-warm"
    assert node.service.head_object("bkt", "live/b", "owner").volume.tier == "hot"


@pytest.mark.parametrize("node", [True], indirect=True)
async def test_a_noncurrent_transition_leaves_the_newest_noncurrent_versions(node: Node) -> None:
    await enable_versioning(node)
    await rules(
        node,
        "<Rule><ID>old-to-warm</ID><Prefix></Prefix><Status>Enabled</Status>"
        "<NoncurrentVersionTransition><NoncurrentDays>1</NoncurrentDays>"
        "<StorageClass>STANDARD_IA</StorageClass>"
        "<NewerNoncurrentVersions>2</NewerNoncurrentVersions>"
        "</NoncurrentVersionTransition></Rule>",
    )
    written = []
    for n in range(5):  # oldest first; the last is current
        written.append(await put(node, "k", os.urandom(300_000 + n)))
        clock(node).advance(60)
    clock(node).advance(2 * DAY)
    report = await node.tiering.run_pass()
    tiers = [node.service.head_object("bkt", "k", "owner", v).volume.tier for v in written]
    # the current one and the two newest noncurrent ones stay; the two older ones move
    assert tiers == ["warm", "warm", "hot", "hot", "hot"]
    assert report.moved == 2
    pinned = node.tiering.explain("bkt", "k")
    assert pinned.get("pinned_by", "") != "lifecycle:old-to-warm"  # the current version


def test_scopes_cover_the_rules_prefixes_with_the_fewest_walks() -> None:
    assert scopes(["logs/", "tmp/", "logs/old/"]) == ["logs/", "tmp/"]
    assert scopes(["a", "a/", "ab", "b"]) == ["a", "b"]
    assert scopes(["x/", ""]) == [""]
    assert scopes([]) == []


async def test_a_pass_over_several_prefixes_resumes_in_the_right_one(node: Node) -> None:
    report = await stopped_then_finished(
        node,
        4,
        "<Rule><ID>a</ID><Prefix>k0</Prefix><Status>Enabled</Status>"
        "<Expiration><Days>1</Days></Expiration></Rule>"
        "<Rule><ID>b</ID><Prefix>k2</Prefix><Status>Enabled</Status>"
        "<Expiration><Days>1</Days></Expiration></Rule>",
    )
    assert report.examined == 6 + 5  # the rest of k0 from where it stopped, then k2
    assert keys(node) == [f"k{i:02d}" for i in range(10, 20)]
