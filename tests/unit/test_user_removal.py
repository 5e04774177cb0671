"""Removing a user who owns buckets: refused unless its buckets go to another user or are
deleted, page by page. A real LMDB store; the command line in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratum.cli.main import main
from stratum.meta import catalog, uploads, versions
from stratum.meta.records import (
    BucketRecord,
    ObjectRecord,
    PartRecord,
    UploadRecord,
    VolumeRecord,
)
from stratum.meta.store import MetaStore, Tx
from stratum.meta.version_listing import every_version
from stratum.service import versioning
from stratum.service.user_removal import (
    LockedVersions,
    NoSuchUser,
    UserOwnsBuckets,
    remove_user,
)
from stratum.service.user_secrets import UserSecrets
from stratum.service.users import User, UserDirectory, load_root_credentials
from stratum.util.clock import ManualClock

ROOT = User("ROOTKEY", "root-secret-key", "f" * 64, "root")
LONG = "long/" + "k" * (catalog.LONG_KEY + 20)  # stored in a list record with its neighbours
KEYS = ["a", "b", "c", "d", LONG, LONG + "2"]


@pytest.fixture
def meta(store: MetaStore) -> MetaStore:
    return store


@pytest.fixture
def users(meta: MetaStore, tmp_path: Path) -> UserDirectory:
    return UserDirectory(meta, ROOT, UserSecrets(tmp_path))


def fill(meta: MetaStore, bucket: str, owner: str) -> None:
    """A bucket with :data:`KEYS` and an upload in progress with one part."""

    def write(tx: Tx) -> None:
        catalog.put_bucket(tx, BucketRecord(bucket, owner, 1.0))
        for key in KEYS:
            volume_id = f"{bucket}-{len(key)}-{key[-1]}"
            catalog.put_volume(tx, VolumeRecord(volume_id, "hot", "seg", {}, 1, "0" * 32, 1.0))
            catalog.put_object(
                tx, bucket, ObjectRecord(key, volume_id, 1, '"e"', 1.0, owner_id=owner)
            )
        uploads.put_upload(tx, UploadRecord(f"up-{bucket}", bucket, "u", owner, 1.0))
        catalog.put_volume(tx, VolumeRecord(f"part-{bucket}", "hot", "seg", {}, 1, "0" * 32, 1.0))
        uploads.put_part(tx, f"up-{bucket}", PartRecord(1, f"part-{bucket}", 1, '"p"', 1.0))

    meta.write_sync(write)


def owners(meta: MetaStore, bucket: str) -> set[str]:
    def read(tx: Tx) -> set[str]:
        page = catalog.list_objects(tx, bucket, max_keys=100)
        found = {r.owner_id for r in page.objects}
        return found | {u.owner_id for u in uploads.uploads_in_bucket(tx, bucket)}

    return meta.read(read)


def test_a_user_owning_buckets_is_not_removed_silently(
    users: UserDirectory, meta: MetaStore
) -> None:
    alice = users.add("ALICEKEY", "alice-secret", "alice", 1.0)
    fill(meta, "photos", alice.canonical_id)
    with pytest.raises(UserOwnsBuckets, match=r"owns 1 bucket.*photos.*--to.*--delete-buckets"):
        remove_user(users, "ALICEKEY")
    assert users.lookup("ALICEKEY") == alice
    with pytest.raises(NoSuchUser):
        remove_user(users, "NOBODY")
    with pytest.raises(ValueError):
        remove_user(users, "ROOTKEY")
    users.add("BOBKEY", "bob-secret-00", "bob", 1.0)
    assert remove_user(users, "BOBKEY").buckets == []  # nothing owned: removed
    assert users.lookup("BOBKEY") is None


@pytest.mark.parametrize("heir", ["BOBKEY", "ROOTKEY"])
def test_buckets_go_to_another_user(users: UserDirectory, meta: MetaStore, heir: str) -> None:
    alice = users.add("ALICEKEY", "alice-secret", "alice", 1.0)
    bob = users.add("BOBKEY", "bob-secret-00", "bob", 1.0)
    heir_id = (users.lookup(heir) or ROOT).canonical_id
    fill(meta, "photos", alice.canonical_id)
    fill(meta, "docs", alice.canonical_id)
    fill(meta, "bobs", bob.canonical_id)
    with pytest.raises(NoSuchUser):
        remove_user(users, "ALICEKEY", to="NOBODY")
    removal = remove_user(users, "ALICEKEY", to=heir, page=2)
    assert (sorted(removal.buckets), removal.heir) == (["docs", "photos"], heir)
    assert removal.objects == 2 * len(KEYS)
    assert users.lookup("ALICEKEY") is None
    for name in ("photos", "docs"):
        bucket = meta.read(lambda tx, name=name: catalog.get_bucket(tx, name))
        assert bucket is not None and bucket.owner_id == heir_id
        assert owners(meta, name) == {heir_id}
    assert owners(meta, "bobs") == {bob.canonical_id}
    # the same access key again is a new user: it inherits nothing
    again = users.add("ALICEKEY", "alice-secret", "alice", 2.0)
    assert again.canonical_id not in (alice.canonical_id, heir_id)


def test_buckets_and_their_objects_are_deleted_page_by_page(
    users: UserDirectory, meta: MetaStore
) -> None:
    alice = users.add("ALICEKEY", "alice-secret", "alice", 1.0)
    fill(meta, "photos", alice.canonical_id)
    fill(meta, "keep", ROOT.canonical_id)
    removal = remove_user(users, "ALICEKEY", delete_buckets=True, page=2)
    assert (removal.buckets, removal.objects) == (["photos"], len(KEYS))
    assert users.lookup("ALICEKEY") is None

    def state(tx: Tx) -> tuple[object, ...]:
        garbage = {key for key, _record in catalog.pending_garbage(tx)}
        left = [b.name for b in catalog.list_buckets(tx)]
        return garbage, left, uploads.uploads_in_bucket(tx, "photos")

    garbage, left, pending = meta.read(state)
    assert left == ["keep"] and pending == []
    # every volume of the bucket, the upload's part included, waits for the collector
    assert garbage == {f"photos-{len(k)}-{k[-1]}" for k in KEYS} | {"part-photos"}
    assert len(catalog_keys(meta, "keep")) == len(KEYS)


def fill_versions(meta: MetaStore, bucket: str, owner: str, **lock: object) -> list[str]:
    """A bucket with versioning Enabled and a configuration record on disk: two keys with a
    noncurrent version each, one under a delete marker, one version changed after it was
    written (its amend record on disk), ``lock`` given to the newest version of ``a``.
    Returns every volume id it holds, records on disk included."""
    made: list[str] = []

    def volume(tx: Tx, volume_id: str) -> str:
        catalog.put_volume(tx, VolumeRecord(volume_id, "hot", "seg", {}, 1, "0" * 32, 1.0))
        made.append(volume_id)
        return volume_id

    def held(volume_id: str) -> dict[str, object]:
        made.append(volume_id)
        return versioning.hold(volume_id, "hot", {"disk": 0}, 1.0, 1)

    def write(tx: Tx) -> None:
        record = BucketRecord(bucket, owner, 1.0, versioning="Enabled")
        record.config_record = held(f"{bucket}-config")
        catalog.put_bucket(tx, record)
        for n, (key, marker) in enumerate([("a", False), ("a", False), ("b", False), ("b", True)]):
            version = ObjectRecord(key, volume(tx, f"{bucket}-{n}"), 1, '"e"', 1.0 + n)
            version.owner_id, version.delete_marker = owner, marker
            version.order = (n + 1).to_bytes(16, "big").hex()
            version.version_id = version.order
            if n == 0:
                version.amend_record = held(f"{bucket}-amend")
            if n == 1:
                for name, value in lock.items():
                    setattr(version, name, value)
            versioning.retire(tx, versioning.write_version(tx, record, version, 1.0 + n))

    meta.write_sync(write)
    return made


def test_every_version_and_delete_marker_goes_with_the_bucket(
    users: UserDirectory, meta: MetaStore
) -> None:
    alice = users.add("ALICEKEY", "alice-secret", "alice", 1.0)
    made = fill_versions(meta, "history", alice.canonical_id)
    fill(meta, "keep", ROOT.canonical_id)
    assert len(meta.read(lambda tx: list(every_version(tx, "history")))) == 4
    removal = remove_user(users, "ALICEKEY", delete_buckets=True, page=3)
    assert (removal.buckets, removal.objects) == (["history"], 4)

    def state(tx: Tx) -> tuple[set[str], list[object], bool]:
        garbage = {key for key, _record in catalog.pending_garbage(tx, 1000)}
        return garbage, list(every_version(tx, "history")), catalog.bucket_is_empty(tx, "history")

    garbage, left, empty = meta.read(state)
    assert left == [] and empty
    assert set(made) <= garbage  # data, markers, the change record and the configuration record
    # a bucket of that name made again starts with no history
    meta.write_sync(lambda tx: catalog.put_bucket(tx, BucketRecord("history", "x", 2.0)))
    assert meta.read(lambda tx: list(every_version(tx, "history"))) == []


def test_handed_over_buckets_give_every_version_and_its_acl_to_the_heir(
    users: UserDirectory, meta: MetaStore
) -> None:
    alice = users.add("ALICEKEY", "alice-secret", "alice", 1.0)
    bob = users.add("BOBKEY", "bob-secret-00", "bob", 1.0)
    old, heir = alice.canonical_id, bob.canonical_id
    fill_versions(meta, "history", old)
    acl = {"v": 1, "owner": old, "grants": [["id", old, "FULL_CONTROL"], ["group", "g", "READ"]]}

    def give_acls(tx: Tx) -> None:
        for version in list(every_version(tx, "history")):
            version.acl = acl
            versions.add(tx, "history", version)

    meta.write_sync(give_acls)
    removal = remove_user(users, "ALICEKEY", to="BOBKEY", page=1)
    assert removal.objects >= 4  # the four versions (a current record counts again)
    left = meta.read(lambda tx: list(every_version(tx, "history")))
    assert len(left) == 4 and {v.owner_id for v in left} == {heir}
    for version in left:
        assert version.acl["owner"] == heir
        assert version.acl["grants"] == [["id", heir, "FULL_CONTROL"], ["group", "g", "READ"]]


@pytest.mark.parametrize(
    "lock",
    [
        {"legal_hold": True},
        {"lock_mode": "COMPLIANCE", "lock_until": 2_000.0},
        {"lock_mode": "GOVERNANCE", "lock_until": 2_000.0},
    ],
)
def test_locked_versions_keep_their_user(
    users: UserDirectory, meta: MetaStore, lock: dict[str, object]
) -> None:
    alice = users.add("ALICEKEY", "alice-secret", "alice", 1.0)
    fill_versions(meta, "vault", alice.canonical_id, **lock)
    fill(meta, "plain", alice.canonical_id)
    clock = ManualClock(1_000.0)
    with pytest.raises(LockedVersions, match=r"vault .*Object Lock.*--to"):
        remove_user(users, "ALICEKEY", delete_buckets=True, clock=clock)
    assert users.lookup("ALICEKEY") == alice
    assert len(meta.read(lambda tx: list(every_version(tx, "vault")))) == 4
    assert len(catalog_keys(meta, "plain")) == len(KEYS)  # nothing deleted before the refusal
    if "lock_until" in lock:  # a retention past its date keeps nothing
        clock.set(3_000.0)
        removal = remove_user(users, "ALICEKEY", delete_buckets=True, clock=clock)
        assert sorted(removal.buckets) == ["plain", "vault"]


def catalog_keys(meta: MetaStore, bucket: str) -> list[str]:
    return [r.key for r in meta.read(lambda tx: catalog.list_objects(tx, bucket)).objects]


def test_the_command_refuses_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    cli = ["--data-dir", str(data)]
    assert main(["user", "add", "ALICEKEY", "alice-secret", *cli]) == 0
    store = MetaStore(data / "meta")
    store.open()
    try:
        alice = store.read(lambda tx: catalog.get_user(tx, "ALICEKEY"))
        assert alice is not None
        fill(store, "photos", alice.canonical_id)
    finally:
        store.close()
    capsys.readouterr()
    assert main(["user", "remove", "ALICEKEY", *cli]) == 2
    assert "owns 1 bucket(s): photos" in capsys.readouterr().err
    assert main(["user", "remove", "ALICEKEY", "--to", "NOBODY", *cli]) == 1
    root = load_root_credentials(data).user.access_key
    assert main(["user", "remove", "ALICEKEY", "--to", root, *cli]) == 0
    assert f"1 bucket(s) now owned by {root}: photos" in capsys.readouterr().out
    assert main(["user", "remove", "ALICEKEY", *cli]) == 1  # gone


def test_a_user_outrunning_the_emptying_is_kept_and_told_to_try_again(
    users: UserDirectory, meta: MetaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stratum.service import user_removal

    alice = users.add("ALICEKEY", "alice-secret", "alice", 1.0)
    fill(meta, "busy", alice.canonical_id)
    monkeypatch.setattr(user_removal, "ROUNDS", 0)  # no round empties the bucket in time
    with pytest.raises(user_removal.StillWriting, match="try again"):
        remove_user(users, "ALICEKEY", delete_buckets=True)
    assert users.lookup("ALICEKEY") is not None
    assert meta.read(lambda tx: catalog.get_bucket(tx, "busy")) is not None
