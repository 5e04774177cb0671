"""The catalog against a reference model: listing order, prefixes, delimiters, long keys."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratum.meta import catalog
from stratum.meta.records import BucketRecord, ObjectRecord, RecordError, VolumeRecord
from stratum.meta.store import MetaStore, Tx


def _obj(key: str) -> ObjectRecord:
    return ObjectRecord(key=key, volume_id="v" + str(len(key)), size=1, etag='"x"', last_modified=0)


def reference_list(
    keys: list[str], prefix: str, delimiter: str, start_after: str, max_keys: int
) -> tuple[list[str], list[str], bool, str | None]:
    """S3's listing semantics written the slow, obvious way."""
    enc = sorted(set(keys), key=lambda k: k.encode())
    items: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for k in enc:
        if not k.startswith(prefix):
            continue
        if delimiter and delimiter in k[len(prefix) :]:
            cp = k[: k.index(delimiter, len(prefix)) + len(delimiter)]
            if cp not in seen:
                seen.add(cp)
                items.append((cp, True))
        else:
            items.append((k, False))
    items = [it for it in items if it[0].encode() > start_after.encode()]
    if start_after and delimiter and start_after.startswith(prefix):
        rest = start_after[len(prefix) :]
        if delimiter in rest:
            cp = start_after[: start_after.index(delimiter, len(prefix)) + len(delimiter)]
            items = [it for it in items if not (it[1] is False and it[0].startswith(cp))]
            items = [it for it in items if it[0] != cp]
    if max_keys <= 0:
        return [], [], False, None
    page = items[:max_keys]
    truncated = len(items) > max_keys
    return (
        [k for k, cp in page if not cp],
        [k for k, cp in page if cp],
        truncated,
        page[-1][0] if truncated else None,
    )


alphabet = st.sampled_from(["a", "b", "/", "é", "z", "\U0001f600", "-", "~"])
short_keys = st.text(alphabet, min_size=1, max_size=6)
long_keys = st.builds(lambda a, b: "L" * 438 + a + b, short_keys, short_keys)
keys_strategy = st.lists(st.one_of(short_keys, long_keys), min_size=0, max_size=30)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=keys_strategy,
    prefix=st.one_of(st.just(""), st.text(alphabet, max_size=2), st.just("L" * 439)),
    delimiter=st.sampled_from(["", "/", "a", "é"]),
    start_after=st.one_of(st.just(""), short_keys, long_keys),
    max_keys=st.integers(0, 8),
)
def test_listing_matches_reference(
    store: MetaStore, keys: list[str], prefix: str, delimiter: str, start_after: str, max_keys: int
) -> None:
    bucket = "b" + str(abs(hash((tuple(keys), prefix, delimiter, start_after, max_keys))))[:20]

    def fill(tx: catalog.Tx) -> None:
        for k in keys:
            catalog.put_object(tx, bucket, _obj(k))

    store.write_sync(fill)
    page = store.read(
        lambda tx: catalog.list_objects(
            tx,
            bucket,
            prefix=prefix,
            delimiter=delimiter,
            start_after=start_after,
            max_keys=max_keys,
        )
    )
    want = reference_list(keys, prefix, delimiter, start_after, max_keys)
    got = ([o.key for o in page.objects], page.common_prefixes, page.is_truncated, page.next_marker)
    assert got == want


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(keys=keys_strategy, delimiter=st.sampled_from(["", "/"]), page_size=st.integers(1, 5))
def test_paging_visits_everything_once(
    store: MetaStore, keys: list[str], delimiter: str, page_size: int
) -> None:
    bucket = "p" + str(abs(hash((tuple(keys), delimiter, page_size))))[:20]
    store.write_sync(lambda tx: [catalog.put_object(tx, bucket, _obj(k)) for k in keys])
    marker, seen = "", []
    while True:
        page = store.read(
            functools.partial(
                catalog.list_objects,
                bucket=bucket,
                delimiter=delimiter,
                start_after=marker,
                max_keys=page_size,
            )
        )
        seen += [o.key for o in page.objects] + page.common_prefixes
        if not page.is_truncated:
            break
        assert page.next_marker is not None
        marker = page.next_marker
    want = reference_list(keys, "", delimiter, "", 10**6)
    assert sorted(seen, key=lambda k: k.encode()) == sorted(
        want[0] + want[1], key=lambda k: k.encode()
    )
    assert len(seen) == len(set(seen))


def test_put_get_delete_long_and_short(store: MetaStore) -> None:
    long_a, long_b = "x" * 500 + "a", "x" * 500 + "b"
    for k in ("short", long_a, long_b, "x" * 440):
        prev = store.write_sync(lambda tx, k=k: catalog.put_object(tx, "bk", _obj(k)))
        assert prev is None
    assert store.read(lambda tx: catalog.get_object(tx, "bk", long_b)) is not None
    replaced = store.write_sync(lambda tx: catalog.put_object(tx, "bk", _obj(long_a)))
    assert replaced is not None and replaced.key == long_a
    gone = store.write_sync(lambda tx: catalog.delete_object(tx, "bk", long_a))
    assert gone is not None and gone.key == long_a
    assert store.read(lambda tx: catalog.get_object(tx, "bk", long_a)) is None
    assert store.read(lambda tx: catalog.get_object(tx, "bk", long_b)) is not None
    assert store.write_sync(lambda tx: catalog.delete_object(tx, "bk", "nope")) is None


def test_bucket_empty_and_records(store: MetaStore) -> None:
    store.write_sync(lambda tx: catalog.put_bucket(tx, BucketRecord("b1", "owner", 1.0)))
    store.write_sync(lambda tx: catalog.put_bucket(tx, BucketRecord("b10", "owner", 1.0)))
    assert store.read(lambda tx: catalog.bucket_is_empty(tx, "b1"))
    store.write_sync(lambda tx: catalog.put_object(tx, "b10", _obj("k")))
    assert store.read(lambda tx: catalog.bucket_is_empty(tx, "b1"))
    assert not store.read(lambda tx: catalog.bucket_is_empty(tx, "b10"))
    names = [b.name for b in store.read(catalog.list_buckets)]
    assert names == ["b1", "b10"]


def test_volume_retire_moves_to_gc(store: MetaStore) -> None:
    vol = VolumeRecord("v1", "hot", "seg", {"x": 1}, 10, "00", 1.0)
    store.write_sync(lambda tx: catalog.put_volume(tx, vol))
    store.write_sync(lambda tx: catalog.retire_volume(tx, "v1"))
    assert store.read(lambda tx: catalog.get_volume(tx, "v1")) is None
    assert [(k, g.volume_id) for k, g in store.read(catalog.pending_garbage)] == [("v1", "v1")]


def test_newer_record_format_is_refused() -> None:
    with pytest.raises(RecordError):
        ObjectRecord.decode(b"\x07{}")


def test_fields_of_a_newer_minor_writer_are_ignored() -> None:
    vol = VolumeRecord("v1", "hot", "seg", {"x": 1}, 10, "00", 1.0)
    raw = vol.encode()
    newer = raw[:-1] + b',"from_the_future":[1,2]}'
    assert VolumeRecord.decode(newer) == VolumeRecord.decode(raw) == vol
    with pytest.raises(TypeError):  # a missing field is still an error
        VolumeRecord.from_dict({"volume_id": "v1"})


def test_pending_garbage_pages_through_the_queue(store: MetaStore) -> None:
    for n in range(7):
        vol = VolumeRecord(f"v{n}", "hot", "seg", {"x": 1}, 10, "00", 1.0)
        store.write_sync(lambda tx, vol=vol: catalog.put_volume(tx, vol))
        store.write_sync(lambda tx, n=n: catalog.retire_volume(tx, f"v{n}"))
    seen, after = [], ""
    while page := store.read(functools.partial(catalog.pending_garbage, limit=3, after=after)):
        seen += [k for k, _ in page]
        after = page[-1][0]
    assert seen == [f"v{n}" for n in range(7)]


async def test_concurrent_writes_are_group_committed(store: MetaStore) -> None:
    async def one(i: int) -> None:
        await store.write(lambda tx: catalog.put_object(tx, "g", _obj(f"k{i}")))

    await asyncio.gather(*(one(i) for i in range(300)))
    assert store.writes >= 300
    assert store.commits < 150, "concurrent writes should share commits"
    page = store.read(lambda tx: catalog.list_objects(tx, "g", max_keys=1000))
    assert len(page.objects) == 300


async def test_a_commit_waits_for_a_write_announced_as_coming(
    store: MetaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stratum.meta.store.GATHER_DELAY", 0.3)  # (0.5 ms in service)

    async def two_writes(announce: bool) -> int:
        before = store.commits
        with store.coming() if announce else contextlib.nullcontext():
            first = asyncio.ensure_future(
                store.write(lambda tx: catalog.put_object(tx, "c", _obj("a")))
            )
            await asyncio.sleep(0.05)  # the writer has taken the first write by now
        await store.write(lambda tx: catalog.put_object(tx, "c", _obj("bb")))
        await first
        return store.commits - before

    assert await two_writes(announce=False) == 2  # nothing said: no waiting
    assert await two_writes(announce=True) == 1  # the second joined the first's commit


async def test_failing_write_rolls_back_alone(store: MetaStore) -> None:
    def bad(tx: catalog.Tx) -> None:
        catalog.put_object(tx, "r", _obj("bad"))
        raise ValueError("boom")

    results = await asyncio.gather(
        store.write(lambda tx: catalog.put_object(tx, "r", _obj("good"))),
        store.write(bad),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError)
    assert store.read(lambda tx: catalog.get_object(tx, "r", "good")) is not None
    assert store.read(lambda tx: catalog.get_object(tx, "r", "bad")) is None


def test_map_grows_on_its_own(tmp_path: Path) -> None:
    s = MetaStore(tmp_path / "small", map_size=1 << 20)
    s.open()
    try:
        blob = "y" * 2000
        for batch in range(20):
            s.write_sync(
                lambda tx, b=batch: [
                    catalog.put_object(tx, "m", ObjectRecord(f"{b}-{i}", blob, 1, "e", 0))
                    for i in range(100)
                ]
            )
        page = s.read(lambda tx: catalog.list_objects(tx, "m", max_keys=5000))
        assert len(page.objects) == 2000
    finally:
        s.close()


def test_a_reopened_store_has_room_before_its_first_write(tmp_path: Path) -> None:
    """LMDB reopens a store with a map the size of its file: full. The first write would grow
    it, waiting for every reader while holding up new ones; the store is opened with room."""
    s = MetaStore(tmp_path / "full", map_size=1 << 20)
    s.open()
    blob = "z" * 2000
    for batch in range(20):  # grown on its own several times
        s.write_sync(
            lambda tx, b=batch: [
                catalog.put_object(tx, "m", ObjectRecord(f"{b}-{i}", blob, 1, "e", 0))
                for i in range(100)
            ]
        )
    s.close()
    again = MetaStore(tmp_path / "full", map_size=1 << 20)
    again.open()
    try:
        info, page = again._env.info(), again._env.stat()["psize"]
        used = (info["last_pgno"] + 1) * page
        assert info["map_size"] >= 2 * used
        grown = again._map_size
        again.write_sync(
            lambda tx: catalog.put_object(tx, "m", ObjectRecord("one", "v", 1, "e", 0))
        )
        assert again._map_size == grown, "the first write after opening grew the map"
    finally:
        again.close()


def test_a_bucket_page_holds_the_page_not_every_bucket(tmp_path: Path) -> None:
    """50,000 buckets of others among a user's 30: pages of 10 by name, memory of a page."""
    import tracemalloc

    store = MetaStore(tmp_path / "m")
    store.open()
    try:
        mine = [f"m-{n:05d}" for n in range(0, 50_000, 1667)]

        def fill(tx: Tx) -> None:
            for n in range(50_000):
                name = f"m-{n:05d}"
                owner = "me" if name in mine else "other"
                catalog.put_bucket(tx, BucketRecord(name=name, owner_id=owner, created=0))

        store.write_sync(fill)
        seen: list[str] = []
        after = ""
        tracemalloc.start()
        while True:
            page, more = store.read(
                functools.partial(catalog.bucket_page, owner_id="me", after=after, limit=10)
            )
            seen += [b.name for b in page]
            if not more:
                break
            after = page[-1].name
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert seen == mine
        assert peak < 300_000, peak  # 50,000 decoded buckets would take tens of MB
        only, more = store.read(
            functools.partial(catalog.bucket_page, owner_id="me", prefix="m-0", limit=99)
        )
        assert [b.name for b in only] == [n for n in mine if n.startswith("m-0")] and not more
        elsewhere, _ = store.read(
            functools.partial(catalog.bucket_page, owner_id="me", region="eu-west-1", limit=9)
        )
        assert elsewhere == []
    finally:
        store.close()
