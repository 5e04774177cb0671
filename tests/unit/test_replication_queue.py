"""The replication queue in a real LMDB store: queued with the version, settled per target."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratum.config import load_config
from stratum.meta import catalog, versions
from stratum.meta.records import BucketRecord, ObjectRecord, VolumeRecord
from stratum.meta.store import MetaStore, Tx
from stratum.replication import queue, rules
from stratum.replication.pusher import PartChecksums, backoff, object_headers
from stratum.service import versioning

CONFIG = """
[server]
site_id = 3

[replication.one]
buckets = ["photos"]
endpoint = "http://127.0.0.1:1"

[replication.two]
buckets = ["*"]
endpoint = "http://127.0.0.1:2"
delete_markers = false
"""


@pytest.fixture
def enqueuer(tmp_path: Path) -> queue.Enqueuer:
    path = tmp_path / "stratum.toml"
    path.write_text(CONFIG)
    return queue.Enqueuer(load_config(path).replication, lambda: 1000.0)


def bucket(name: str, state: str = "Enabled") -> BucketRecord:
    return BucketRecord(name=name, owner_id="o", created=0.0, versioning=state)


def version(key: str, order: bytes, *, marker: bool = False) -> ObjectRecord:
    return ObjectRecord(
        key=key,
        volume_id=order.hex(),
        size=0 if marker else 10,
        etag="" if marker else '"0123456789abcdef0123456789abcdef"',
        last_modified=1.0,
        version_id=order.hex(),
        order=order.hex(),
        delete_marker=marker,
    )


def write(store: MetaStore, enqueuer: queue.Enqueuer, b: BucketRecord, r: ObjectRecord) -> None:
    def commit(tx: Tx) -> None:
        catalog.put_bucket(tx, b)
        enqueuer(tx, b, r)
        versioning.write_version(tx, b, r, 0.0)

    store.write_sync(commit)


def test_a_version_is_queued_for_each_target_of_its_bucket(
    store: MetaStore, enqueuer: queue.Enqueuer
) -> None:
    clock = versions.OrderClock(3)
    photo = version("a.jpg", clock.next(1.0))
    write(store, enqueuer, bucket("photos"), photo)
    other = version("b.txt", clock.next(1.0))
    write(store, enqueuer, bucket("music"), other)
    marker = version("c", clock.next(1.0), marker=True)
    write(store, enqueuer, bucket("photos"), marker)
    one = store.read(lambda tx: list(queue.entries(tx, "one")))
    two = store.read(lambda tx: list(queue.entries(tx, "two")))
    assert [(e.bucket, e.key, e.marker) for _k, e in one] == [
        ("photos", "a.jpg", False),
        ("photos", "c", True),
    ]
    assert [(e.bucket, e.key) for _k, e in two] == [("photos", "a.jpg"), ("music", "b.txt")]
    assert one[0][1].queued == 1000.0 and one[0][1].version_id == photo.version_id
    stored = store.read(lambda tx: versions.get(tx, "photos", "a.jpg", bytes.fromhex(photo.order)))
    assert stored is not None and stored.replication == "PENDING"
    depth = store.read(lambda tx: queue.depth(tx, "two"))
    assert (depth.entries, depth.bytes, depth.oldest) == (2, 20, 1000.0)


def test_replicas_unversioned_buckets_and_null_versions_are_not_queued(
    store: MetaStore, enqueuer: queue.Enqueuer
) -> None:
    clock = versions.OrderClock(3)
    replica = version("r", clock.next(1.0))
    replica.replication = "REPLICA"
    write(store, enqueuer, bucket("photos"), replica)
    write(store, enqueuer, bucket("photos", ""), version("plain", clock.next(1.0)))
    suspended = version("s", clock.next(1.0))
    suspended.version_id = versions.NULL
    write(store, enqueuer, bucket("photos", "Suspended"), suspended)
    assert store.read(lambda tx: list(queue.entries(tx, "one"))) == []


def test_completed_once_every_target_has_it_failed_after_repeated_failures(
    store: MetaStore, enqueuer: queue.Enqueuer
) -> None:
    r = version("a.jpg", versions.OrderClock(3).next(1.0))
    write(store, enqueuer, bucket("photos"), r)
    order = bytes.fromhex(r.order)
    [(key_one, entry_one)] = store.read(lambda tx: list(queue.entries(tx, "one")))
    [(key_two, entry_two)] = store.read(lambda tx: list(queue.entries(tx, "two")))

    def status() -> str:
        found = store.read(lambda tx: versions.get(tx, "photos", "a.jpg", order))
        current = store.read(lambda tx: catalog.get_object(tx, "photos", "a.jpg"))
        assert found is not None and current is not None
        assert current.replication == found.replication  # both copies of the record agree
        return found.replication

    for _attempt in range(queue.FAILED_AFTER):
        assert status() == "PENDING"
        store.write_sync(lambda tx: queue.failed(tx, key_two, entry_two, "boom", 50.0))
    assert status() == "FAILED"
    held = store.read(lambda tx: queue.due(tx, "two", 49.0, 10))
    assert held.entries == [] and held.next_try == 50.0
    assert len(store.read(lambda tx: queue.due(tx, "two", 50.0, 10)).entries) == 1
    assert store.read(lambda tx: queue.depth(tx, "two")).last_error == "boom"
    store.write_sync(lambda tx: queue.finish(tx, key_one, entry_one, ["one", "two"]))
    assert status() == "FAILED"  # "two" still waits
    store.write_sync(lambda tx: queue.finish(tx, key_two, entry_two, ["one", "two"]))
    assert status() == "COMPLETED"
    assert store.read(lambda tx: queue.depth(tx, "two")).entries == 0


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [backoff(n) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff(50) == 300.0


def test_a_single_put_carries_the_whole_body_digests_only() -> None:
    r = version("k", versions.OrderClock(3).next(1.0))
    r.checksums = {"sha256": "abc=", "crc32": "def=-2"}
    r.user_meta = {"camera": "x100"}
    r.tags = {"a": "b c"}
    single = object_headers(r, 0.0, single=True)
    assert single["Content-MD5"] == "ASNFZ4mrze8BI0VniavN7w=="
    assert single["x-amz-checksum-sha256"] == "abc=" and "x-amz-checksum-crc32" not in single
    assert single["x-amz-meta-camera"] == "x100" and single["x-amz-tagging"] == "a=b+c"
    assert "Content-MD5" not in object_headers(r, 0.0, single=False)


def test_multipart_checksums_go_along_when_the_parts_values_are_stored() -> None:
    r = version("k", versions.OrderClock(3).next(1.0))
    r.parts = 2
    volume = VolumeRecord("v", "hot", "seg", {}, 7, "", 0.0, part_sizes=[5, 2])
    assert PartChecksums.of(r, volume) is None  # no checksum
    r.checksums = {"crc32": "AAAAAA==-2"}
    assert PartChecksums.of(r, volume) is None  # written before parts' values were stored
    volume.part_checksums = ["AQIDBA==", "BQYHCA=="]
    sums = PartChecksums.of(r, volume)
    assert sums is not None and sums.parts == volume.part_checksums
    assert sums.create_headers() == {
        "x-amz-checksum-algorithm": "CRC32",
        "x-amz-checksum-type": "COMPOSITE",
    }
    assert sums.complete_headers() == {}  # the parts' values decide a COMPOSITE one
    r.checksums = {"crc32": "AAAAAA=="}
    full = PartChecksums.of(r, volume)
    assert full is not None and full.create_headers()["x-amz-checksum-type"] == "FULL_OBJECT"
    assert full.complete_headers() == {"x-amz-checksum-crc32": "AAAAAA=="}


def test_stored_rules_queue_keys_under_their_prefix(store: MetaStore, tmp_path: Path) -> None:
    path = tmp_path / "stratum.toml"
    path.write_text(CONFIG)
    targets = load_config(path).replication
    enqueuer = queue.Enqueuer((), lambda: 5.0, rules=rules.queue_rules)
    b = bucket("music")
    b.settings = {
        "replication": {
            "role": "",
            "rules": [
                rules.Rule("one", 1, "Enabled", "live/", False, "arn:aws:s3:::music").stored(),
                rules.Rule("two", 2, "Disabled", "", True, "arn:aws:s3:::music").stored(),
            ],
        }
    }
    assert rules.refusal("music", rules.stored_rules(b)[0], targets) is None
    assert "must name" in (
        rules.refusal("music", rules.Rule("x", 0, "Enabled", "", True, ""), targets) or ""
    )
    clock = versions.OrderClock(3)
    write(store, enqueuer, b, version("live/a", clock.next(1.0)))
    write(store, enqueuer, b, version("studio/b", clock.next(1.0)))
    write(store, enqueuer, b, version("live/c", clock.next(1.0), marker=True))
    queued = store.read(lambda tx: [e.key for _k, e in queue.entries(tx, "one")])
    assert queued == ["live/a"]
    assert store.read(lambda tx: list(queue.entries(tx, "two"))) == []
    assert [r.id for r in rules.all_rules(b, targets)] == ["two", "one", "two"]


def test_a_retention_goes_with_the_first_push_only_while_in_force() -> None:
    r = version("k", versions.OrderClock(3).next(1.0))
    r.lock_mode, r.lock_until, r.legal_hold = "COMPLIANCE", 2000.5, True
    headers = object_headers(r, 1000.0, single=True)
    assert headers["x-amz-object-lock-mode"] == "COMPLIANCE"
    assert headers["x-amz-object-lock-retain-until-date"] == "1970-01-01T00:33:20.500000Z"
    assert headers["x-amz-object-lock-legal-hold"] == "ON"
    # run out before the push: a target refuses a date in the past, and nothing is locked
    late = object_headers(r, 2000.5, single=True)
    assert (
        "x-amz-object-lock-mode" not in late and "x-amz-object-lock-retain-until-date" not in late
    )
    assert late["x-amz-object-lock-legal-hold"] == "ON"


def test_a_change_is_queued_as_an_amend_entry_or_counted_in_the_waiting_one(
    store: MetaStore, enqueuer: queue.Enqueuer
) -> None:
    locked = bucket("photos")
    locked.object_lock = True
    clock = versions.OrderClock(3)
    r = version("a.jpg", clock.next(1.0))
    write(store, enqueuer, locked, r)
    [(dbkey, entry)] = store.read(lambda tx: list(queue.entries(tx, "one")))

    def amend(record: ObjectRecord, b: BucketRecord = locked) -> None:
        store.write_sync(lambda tx: enqueuer.amended(tx, b, record))

    # changed while its push is under way (the pusher read ``entry`` before the change):
    # finishing that push leaves an amend entry, which the next pass sends
    amend(r)
    store.write_sync(lambda tx: queue.finish(tx, dbkey, entry, ["one", "two"]))
    [(_k, left)] = store.read(lambda tx: list(queue.entries(tx, "one")))
    assert left.amend and left.amended == 0 and left.attempts == 0
    store.write_sync(lambda tx: queue.finish(tx, dbkey, left, ["one", "two"]))
    assert store.read(lambda tx: list(queue.entries(tx, "one"))) == []
    # a change of a version whose push is done: an amend entry per target of the bucket
    amend(r)
    one = store.read(lambda tx: list(queue.entries(tx, "one")))
    two = store.read(lambda tx: list(queue.entries(tx, "two")))
    assert [(e.amend, e.version_id, e.size) for _k, e in one] == [(True, r.version_id, 0)]
    # "two" still waits for the version itself: both changes are counted in its entry
    assert [(e.amend, e.amended) for _k, e in two] == [(False, 2)]
    # not queued: a replica (its source sends its changes), a version of a bucket whose
    # versioning is not Enabled; queued: a tag change in a bucket without Object Lock
    replica = version("b.jpg", clock.next(1.0))
    replica.replication = "REPLICA"
    amend(replica)
    amend(version("c.jpg", clock.next(1.0)), bucket("photos", "Suspended"))
    amend(version("d.jpg", clock.next(1.0)), bucket("photos"))
    keys = store.read(lambda tx: [e.key for _k, e in queue.entries(tx, "one")])
    assert keys == ["a.jpg", "d.jpg"]


def test_a_version_waiting_out_its_backoff_holds_back_the_later_ones_of_its_key(
    store: MetaStore, enqueuer: queue.Enqueuer
) -> None:
    clock = versions.OrderClock(3)
    places = [("photos", "a.jpg"), ("photos", "a.jpg"), ("photos", "b.jpg"), ("music", "a.jpg")]
    written = [version(key, clock.next(1.0)) for _b, key in places]
    for (name, _key), record in zip(places, written, strict=True):
        write(store, enqueuer, bucket(name), record)
    first, second, other_key, other_bucket = written
    [(dbkey, entry), *_rest] = store.read(lambda tx: list(queue.entries(tx, "two")))
    assert entry.version_id == first.version_id
    store.write_sync(lambda tx: queue.failed(tx, dbkey, entry, "503 SlowDown", 50.0))

    def due(now: float) -> list[tuple[str, str]]:
        found = store.read(lambda tx: queue.due(tx, "two", now, 10))
        assert found.next_try == (50.0 if now < 50.0 else None)
        return [(e.bucket, e.version_id) for _k, e in found.entries]

    # the second version of photos/a.jpg waits for the first (a plain S3 target makes the
    # last version it receives current); other keys, and the same key elsewhere, do not
    assert due(10.0) == [("photos", other_key.version_id), ("music", other_bucket.version_id)]
    assert due(50.0) == [
        ("photos", first.version_id),
        ("photos", second.version_id),
        ("photos", other_key.version_id),
        ("music", other_bucket.version_id),
    ]
