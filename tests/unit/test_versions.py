"""Versions in LMDB against a reference model of S3 versioning.

Random sequences of PUTs, DELETEs, DELETEs of a version and versioning changes run through
the metadata transactions the object service uses (:mod:`stratum.service.versioning`) on a
real LMDB store, and through :class:`Model`, S3's rules written the slow, obvious way. After
each sequence every key's history, its current object, its null version, the volumes given
back and ListObjectVersions (paged, with prefixes and delimiters) must agree with the model.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratum.meta import catalog, versions
from stratum.meta.records import BucketRecord, ObjectRecord, VolumeRecord
from stratum.meta.store import MetaStore, Tx
from stratum.meta.version_listing import list_versions
from stratum.meta.versions import NULL, OrderClock
from stratum.service import errors, versioning

_buckets = itertools.count()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetaStore]:
    s = MetaStore(tmp_path_factory.mktemp("versions") / "meta")
    s.open()
    yield s
    s.close()


@dataclass
class Version:
    key: str
    order: bytes
    version_id: str
    marker: bool
    volume: str


@dataclass
class Model:
    """S3's versioning rules, with no cleverness: per key, its versions newest first."""

    state: str = ""
    keys: dict[str, list[Version]] = field(default_factory=dict)
    freed: list[str] = field(default_factory=list)

    def write(self, v: Version) -> None:
        history = self.keys.setdefault(v.key, [])
        if not self.state:
            self.freed += [old.volume for old in history]
            history.clear()
            if v.marker:  # a DELETE in a never-versioned bucket: the key is gone
                return
        elif v.version_id == NULL:
            self.freed += [old.volume for old in history if old.version_id == NULL]
            history[:] = [old for old in history if old.version_id != NULL]
        history.append(v)
        history.sort(key=lambda x: x.order, reverse=True)

    def remove(self, key: str, version_id: str) -> Version | None:
        history = self.keys.get(key, [])
        for old in history:
            if old.version_id == version_id:
                history.remove(old)
                self.freed.append(old.volume)
                return old
        return None

    def current(self, key: str) -> Version | None:
        history = self.keys.get(key, [])
        return history[0] if history and not history[0].marker else None

    def listing(self, prefix: str, delimiter: str) -> list[tuple[str, str, bool, bool] | str]:
        """Every (key, version id, latest, marker) or common prefix, in S3's order."""
        out: list[tuple[str, str, bool, bool] | str] = []
        for key in sorted((k for k in self.keys if self.keys[k]), key=lambda k: k.encode()):
            if not key.startswith(prefix):
                continue
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                common = key[: cut + len(delimiter)]
                if common not in out:
                    out.append(common)
                continue
            for n, v in enumerate(self.keys[key]):
                out.append((key, v.version_id, n == 0, v.marker))
        return out


KEYS = ["a", "a/b", "a/c", "ab", "b", "é", "a\x00", "a\x01z", "\x00", "L" * 420 + "x"]
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(KEYS)),
        st.tuples(st.just("delete"), st.sampled_from(KEYS)),
        st.tuples(st.just("remove"), st.sampled_from(KEYS), st.integers(0, 5)),
        st.tuples(st.just("remove-null"), st.sampled_from(KEYS)),
        st.tuples(st.just("state"), st.sampled_from(["Enabled", "Suspended"])),
    ),
    max_size=40,
)


def _run(store: MetaStore, ops: list[tuple[object, ...]]) -> tuple[str, Model]:
    bucket = f"v{next(_buckets)}"
    record = BucketRecord(bucket, "owner", 0.0)
    store.write_sync(lambda tx: catalog.put_bucket(tx, record))
    model = Model()
    clock = OrderClock()
    volumes = itertools.count()
    for step, op in enumerate(ops):
        kind, key = op[0], str(op[1])
        if kind == "state":
            record.versioning = model.state = key
            store.write_sync(lambda tx: catalog.put_bucket(tx, record))
            continue
        if kind in ("put", "delete"):
            order = clock.next(1000.0 + step)
            v = Version(
                key,
                order,
                versioning.version_id_for(model.state, order),
                kind == "delete",
                f"vol{next(volumes)}",
            )
            model.write(v)
            if kind == "delete" and not record.versioning:
                got = store.write_sync(
                    lambda tx, key=key: versioning.remove_version(tx, record, key, NULL, 0.0)
                )
                store.write_sync(lambda tx, got=got: versioning.retire(tx, [got] if got else []))
                continue
            obj = ObjectRecord(
                key=key,
                volume_id=v.volume,
                size=0 if v.marker else 1,
                etag="" if v.marker else '"e"',
                last_modified=1000.0 + step,
                version_id=v.version_id,
                order=order.hex(),
                delete_marker=v.marker,
            )
            store.write_sync(functools.partial(_write, record=record, obj=obj))
            continue
        history = model.keys.get(key, [])
        if kind == "remove":
            if not history:
                continue
            vid = history[int(op[2]) % len(history)].version_id  # type: ignore[call-overload]
        else:
            vid = NULL
        model.remove(key, vid)
        store.write_sync(
            lambda tx, key=key, vid=vid: versioning.retire(
                tx, [r] if (r := versioning.remove_version(tx, record, key, vid, 0.0)) else []
            )
        )
    return bucket, model


def _write(tx: Tx, record: BucketRecord, obj: ObjectRecord) -> None:
    catalog.put_volume(tx, VolumeRecord(obj.volume_id, "hot", "seg", {}, obj.size, "", 0.0))
    versioning.retire(tx, versioning.write_version(tx, record, obj, 0.0))


def _check_keys(tx: Tx, bucket: str, model: Model) -> None:
    for key in KEYS:
        want = model.keys.get(key, [])
        got = list(versions.history(tx, bucket, key))
        assert [(r.version_id, r.delete_marker, r.volume_id) for r in got] == [
            (v.version_id, v.marker, v.volume) for v in want
        ], key
        current = catalog.get_object(tx, bucket, key)
        expected = model.current(key)
        assert (current.volume_id if current else None) == (expected.volume if expected else None)
        null = versions.null_version(tx, bucket, key)
        want_null = next((v.volume for v in want if v.version_id == NULL), None)
        assert (null.volume_id if null else None) == want_null
        for v in want:
            found = versions.find(tx, bucket, key, v.version_id)
            assert found is not None and found.volume_id == v.volume


def _page_all(
    store: MetaStore, bucket: str, prefix: str, delimiter: str, page: int
) -> list[tuple[str, str, bool, bool] | str]:
    out: list[tuple[str, str, bool, bool] | str] = []
    key_marker, version_marker = "", ""
    for _ in range(1000):
        got = store.read(
            functools.partial(
                list_versions,
                bucket=bucket,
                prefix=prefix,
                delimiter=delimiter,
                key_marker=key_marker,
                version_marker=version_marker,
                max_keys=page,
            )
        )
        entries: list[tuple[str, str, bool, bool] | str] = [
            (r.key, r.version_id, latest, r.delete_marker) for r, latest in got.entries
        ]
        # common prefixes come in key order among the entries: merge them back in
        merged = sorted(
            entries + list(got.common_prefixes),
            key=lambda e: (e if isinstance(e, str) else e[0]).encode(),
        )
        out += merged
        assert len(got.entries) + len(got.common_prefixes) <= page
        if not got.is_truncated:
            return out
        assert got.next_key_marker is not None
        key_marker, version_marker = got.next_key_marker, got.next_version_id_marker or ""
    raise AssertionError("paging never ended")


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=OPS,
    prefix=st.sampled_from(["", "a", "a/", "\x00"]),
    delimiter=st.sampled_from(["", "/", "b"]),
    page=st.integers(1, 7),
)
def test_versions_match_the_model(
    store: MetaStore, ops: list[tuple[object, ...]], prefix: str, delimiter: str, page: int
) -> None:
    bucket, model = _run(store, ops)
    store.read(lambda tx: _check_keys(tx, bucket, model))
    freed = [g.volume_id for _k, g in store.read(lambda tx: catalog.pending_garbage(tx, 10**6))]
    assert sorted(v for v in freed if v.startswith("vol")) == sorted(model.freed)
    assert _page_all(store, bucket, prefix, delimiter, page) == model.listing(prefix, delimiter)
    store.write_sync(lambda tx: [catalog.forget_garbage(tx, k) for k in freed])
    empty = store.read(lambda tx: catalog.bucket_is_empty(tx, bucket))
    assert empty == (not any(model.keys.values()))


def test_a_key_with_many_versions_pages_from_its_marker(store: MetaStore) -> None:
    """A page starts at the version its marker names: one LMDB seek, not a walk."""
    record = BucketRecord("many", "owner", 0.0, versioning="Enabled")
    store.write_sync(lambda tx: catalog.put_bucket(tx, record))
    clock = OrderClock()

    def fill(tx: Tx) -> None:
        for n in range(3000):
            order = clock.next(float(n))
            obj = ObjectRecord("k", f"vol{n}", 1, '"e"', float(n), order=order.hex())
            obj.version_id = order.hex()
            versioning.write_version(tx, record, obj, 0.0)

    store.write_sync(fill)
    seen: list[str] = []
    marker = ""
    while True:
        page = store.read(
            functools.partial(
                list_versions,
                bucket="many",
                key_marker="k" if marker else "",
                version_marker=marker,
                max_keys=500,
            )
        )
        seen += [r.volume_id for r, _latest in page.entries]
        if not page.is_truncated:
            break
        assert page.next_version_id_marker is not None
        marker = page.next_version_id_marker
    assert seen == [f"vol{n}" for n in reversed(range(3000))]


def test_version_ids_and_orders() -> None:
    clock = OrderClock()
    first = clock.next(100.0)
    assert clock.next(50.0) > first  # a clock set back still moves forward
    above = bytes.fromhex("7f" * 8 + "00" * 8)  # a version from a clock far ahead
    assert clock.next(100.0, above) > above
    assert versions.parse_version_id(first.hex()) == first
    assert versions.parse_version_id(NULL) is None
    for bad in ("", "x" * 32, first.hex().upper(), first.hex()[:-1]):
        with pytest.raises(versions.InvalidVersionId):
            versions.parse_version_id(bad)
    legacy = ObjectRecord("k", "v", 1, '"e"', 12.5)
    assert versions.order_of(legacy) == versions.legacy_order(12.5)


@pytest.mark.parametrize("keys", [["a", "a\x00", "a\x00b", "a\x01", "a\x01\x00", "ab", "a/"]])
def test_key_parts_keep_byte_order(keys: list[str]) -> None:
    ordered = sorted(keys, key=lambda k: k.encode())
    by_part = sorted(keys, key=lambda k: versions.key_part(k) + versions.SEP)
    assert by_part == ordered
    assert all(versions.unstuff(versions.key_part(k)) == k.encode() for k in keys)


def test_locked_versions_are_not_removed(store: MetaStore) -> None:
    """The one decision every removal consults: a locked version stays, and says why."""
    record = BucketRecord("locked", "owner", 0.0, versioning="Enabled")
    store.write_sync(lambda tx: catalog.put_bucket(tx, record))
    order = OrderClock().next(1.0)
    held = ObjectRecord(
        "k", "vol", 1, '"e"', 1.0, version_id=order.hex(), order=order.hex(), legal_hold=True
    )
    store.write_sync(lambda tx: versioning.write_version(tx, record, held, 0.0))
    with pytest.raises(errors.AccessDenied):
        store.write_sync(lambda tx: versioning.remove_version(tx, record, "k", order.hex(), 0.0))
    assert store.read(lambda tx: versions.find(tx, "locked", "k", order.hex())) is not None
    governed = ObjectRecord("k", "v", 1, '"e"', 1.0, lock_mode="GOVERNANCE", lock_until=10.0)
    assert versioning.removal_refused(governed, 5.0) is not None
    assert versioning.removal_refused(governed, 5.0, bypass_governance=True) is None
    assert versioning.removal_refused(governed, 11.0) is None
    compliance = ObjectRecord("k", "v", 1, '"e"', 1.0, lock_mode="COMPLIANCE", lock_until=10.0)
    assert versioning.removal_refused(compliance, 5.0, bypass_governance=True) is not None
