"""Listing multipart uploads from ``upkeys`` against a reference model: order, markers,
prefixes, delimiters; the index rebuilt for a store from before it; a page's memory."""

from __future__ import annotations

import functools
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratum.meta import uploads
from stratum.meta.records import UploadRecord
from stratum.meta.store import MetaStore, Tx

Entry = tuple[str, str]  # (key, upload id) of an upload, (common prefix, "") of a prefix


def _upload(key: str, n: int, bucket: str = "b") -> UploadRecord:
    return UploadRecord(upload_id=f"{n:032x}", bucket=bucket, key=key, owner_id="o", initiated=n)


def reference(
    made: list[UploadRecord],
    prefix: str,
    delimiter: str,
    key_marker: str,
    id_marker: str,
    limit: int,
) -> tuple[list[Entry], bool]:
    """S3's semantics the slow, obvious way: sort all, filter, roll up, cut."""
    ordered = sorted(made, key=lambda u: (u.key.encode(), u.upload_id))
    items: list[Entry] = []
    for u in ordered:
        key, mark = u.key.encode(), key_marker.encode()
        if key_marker and not (
            key > mark or (key == mark and id_marker and u.upload_id > id_marker)
        ):
            continue
        if not u.key.startswith(prefix):
            continue
        cut = u.key.find(delimiter, len(prefix)) if delimiter else -1
        if cut >= 0:
            common = u.key[: cut + len(delimiter)]
            if (common, "") not in items and not (key_marker and key_marker.startswith(common)):
                items.append((common, ""))
            continue
        items.append((u.key, u.upload_id))
    return items[:limit], len(items) > limit


def _page_entries(page: uploads.UploadsPage) -> list[Entry]:
    entries = [(u.key, u.upload_id) for u in page.uploads]
    entries += [(p, "") for p in page.common_prefixes]
    return sorted(entries, key=lambda e: (e[0].encode(), e[1]))


def _fill(store: MetaStore, made: list[UploadRecord]) -> None:
    def put(tx: Tx) -> None:
        for record in made:
            uploads.put_upload(tx, record)

    store.write_sync(put)


KEYS = st.text(alphabet="ab/\x00\x01é", max_size=5)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=st.lists(KEYS, max_size=25),
    prefix=st.sampled_from(["", "a", "a/", "b", "\x00"]),
    delimiter=st.sampled_from(["", "/", "\x00", "ab"]),
    key_marker=st.one_of(st.just(""), KEYS),
    id_pick=st.integers(min_value=-1, max_value=30),
    limit=st.integers(min_value=1, max_value=6),
)
def test_a_page_is_the_reference_page(
    store: MetaStore,
    keys: list[str],
    prefix: str,
    delimiter: str,
    key_marker: str,
    id_pick: int,
    limit: int,
) -> None:
    store.write_sync(lambda tx: tx.drop("uploads") or tx.drop("upkeys"))
    made = [_upload(key, n + 1) for n, key in enumerate(keys)]
    _fill(store, made)
    id_marker = f"{id_pick:032x}" if key_marker and id_pick >= 0 else ""
    page = store.read(
        functools.partial(
            uploads.list_uploads,
            bucket="b",
            prefix=prefix,
            delimiter=delimiter,
            key_marker=key_marker,
            upload_id_marker=id_marker,
            limit=limit,
        )
    )
    want, truncated = reference(made, prefix, delimiter, key_marker, id_marker, limit)
    assert _page_entries(page) == want
    assert page.is_truncated == truncated
    if truncated:
        last = max(want, key=lambda e: (e[0].encode(), e[1]))
        assert (page.next_key_marker, page.next_upload_id_marker or "") == last


def test_paging_by_the_next_markers_walks_everything_once(store: MetaStore) -> None:
    made = [_upload(k, n + 1) for n, k in enumerate(["x/1", "x/2", "a", "a", "a", "y", "x/3"])]
    made.append(_upload("other-bucket-key", 99, bucket="c"))
    _fill(store, made)
    for delimiter in ("", "/"):
        seen: list[Entry] = []
        marker, id_marker = "", ""
        while True:
            page = store.read(
                functools.partial(
                    uploads.list_uploads,
                    bucket="b",
                    delimiter=delimiter,
                    key_marker=marker,
                    upload_id_marker=id_marker,
                    limit=2,
                )
            )
            seen += _page_entries(page)
            if not page.is_truncated:
                break
            marker, id_marker = page.next_key_marker or "", page.next_upload_id_marker or ""
        want, _ = reference(made[:-1], "", delimiter, "", "", 100)
        assert seen == want


def test_the_index_is_rebuilt_for_a_store_from_before_it(store: MetaStore) -> None:
    made = [_upload(k, n + 1) for n, k in enumerate(["b", "a", "c"])]
    _fill(store, made)
    assert store.write_sync(uploads.index_uploads) is False  # in step: nothing to do
    store.write_sync(lambda tx: tx.drop("upkeys"))
    page = store.read(functools.partial(uploads.list_uploads, bucket="b"))
    assert page.uploads == []  # what a store from before the index would list
    assert store.write_sync(uploads.index_uploads) is True
    page = store.read(functools.partial(uploads.list_uploads, bucket="b"))
    assert [u.key for u in page.uploads] == ["a", "b", "c"]


def test_deleting_an_upload_removes_its_index_entry(store: MetaStore) -> None:
    made = [_upload("k", 1), _upload("k", 2)]
    _fill(store, made)
    store.write_sync(lambda tx: uploads.delete_upload(tx, "b", made[0].upload_id))
    page = store.read(functools.partial(uploads.list_uploads, bucket="b"))
    assert [u.upload_id for u in page.uploads] == [made[1].upload_id]
    assert store.read(lambda tx: tx.entries("upkeys")) == 1


def test_a_page_costs_what_it_returns_not_the_buckets_uploads(tmp_path: Path) -> None:
    """20,000 uploads under one prefix and 20,000 others: a page of 10 with a delimiter
    jumps over each rolled-up prefix instead of reading (or holding) its uploads."""
    store = MetaStore(tmp_path / "m")
    store.open()
    try:
        made = [_upload(f"dir/{n:06d}", n + 1) for n in range(20_000)]
        made += [_upload(f"top{n:06d}", 20_001 + n) for n in range(20_000)]
        _fill(store, made)
        del made
        tracemalloc.start()
        page = store.read(
            functools.partial(uploads.list_uploads, bucket="b", delimiter="/", limit=10)
        )
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert page.common_prefixes == ["dir/"]
        assert [u.key for u in page.uploads] == [f"top{n:06d}" for n in range(9)]
        assert peak < 200_000, peak  # 40,000 decoded uploads would take ~40 MB
    finally:
        store.close()
