"""The listing fast paths give what the general ones give.

``decode_listed`` reads a listing's fields from an object record without decoding it;
``Record.decode`` adopts the decoded dict; ``ListPage`` keeps records undecoded; the XML
renders a listing's entries in one pass. Each is checked against the plain way on
arbitrary records, keys and metadata, including names and values meant to confuse a
pattern over the JSON text.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratum.meta import catalog
from stratum.meta.records import (
    _LISTED_HEAD,
    BucketRecord,
    ListedObject,
    ObjectRecord,
    RecordError,
    UserRecord,
    decode_listed,
)
from stratum.meta.store import MetaStore, Tx

# Text that a pattern over JSON could trip on: quotes, backslashes, controls, field names.
TRICKY = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ['"', "\\", '\\"', "\x00", "\x1f", "\x7f", "é✓😀", '"storage_class":', "storage_class"]
    ),
    st.sampled_from(['","size":1,"etag":"x', '"last_modified":1.5,', "}", "{}"]),
)
NAMES = st.one_of(TRICKY, st.sampled_from(["storage_class", "size", "etag", "key"]))
ETAGS = st.one_of(
    st.from_regex(r'"[0-9a-f]{32}(-[0-9]+)?"', fullmatch=True),
    st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    TRICKY,
)
TIMES = st.one_of(
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
    st.integers(min_value=0, max_value=2**40),
    st.just(1_795_647_398.6883159),
)


@st.composite
def object_records(draw: st.DrawFn) -> ObjectRecord:
    return ObjectRecord(
        key=draw(st.one_of(st.text(min_size=1, max_size=40), TRICKY.filter(bool))),
        volume_id=draw(st.one_of(st.from_regex(r"[0-9a-f]{32}", fullmatch=True), TRICKY)),
        size=draw(st.integers(min_value=0, max_value=2**50)),
        etag=draw(ETAGS),
        last_modified=draw(TIMES),
        content_type=draw(st.one_of(st.just("binary/octet-stream"), TRICKY)),
        user_meta=draw(st.dictionaries(NAMES, TRICKY, max_size=3)),
        headers=draw(st.dictionaries(NAMES, TRICKY, max_size=2)),
        storage_class=draw(st.sampled_from(["", "STANDARD", "GLACIER_IR", '"', "a\\b"])),
        checksums=draw(st.dictionaries(st.sampled_from(["crc32", "sha256"]), TRICKY, max_size=2)),
        parts=draw(st.integers(min_value=0, max_value=10_000)),
        owner_id=draw(st.one_of(st.just("o" * 64), TRICKY)),
        upload_id=draw(st.one_of(st.just(""), TRICKY)),
    )


def _encodable(record: ObjectRecord) -> bytes | None:
    try:
        return record.encode()
    except UnicodeEncodeError:  # lone surrogates: never stored
        return None


@settings(max_examples=400, deadline=None)
@given(object_records())
def test_decode_listed_is_the_records_fields(record: ObjectRecord) -> None:
    raw = _encodable(record)
    if raw is None:
        return
    assert ObjectRecord.decode(raw) == record
    assert decode_listed(raw) == ListedObject.of(record)


def test_an_ordinary_record_takes_the_fast_path() -> None:
    # The pattern follows the field order; a change there must not go unnoticed (it would
    # silently send every listed key through the full decoder).
    record = ObjectRecord(
        key="photos/2024/IMG 0001.jpg",
        volume_id="01a214ece320dcfbbe4c90172b00fc3b",
        size=4096,
        etag='"d41d8cd98f00b204e9800998ecf8427e"',
        last_modified=1_795_647_398.6883159,
        checksums={"crc32": "AAAAAA=="},
        owner_id="o" * 64,
    )
    assert _LISTED_HEAD.match(record.encode().decode()) is not None
    assert decode_listed(record.encode()) == ListedObject.of(record)


def test_decode_listed_refuses_what_decode_refuses() -> None:
    with pytest.raises(RecordError):
        decode_listed(b"\x02{}")
    with pytest.raises(json.JSONDecodeError):
        decode_listed(b"\x01{")


def test_decode_adopts_only_exactly_the_fields() -> None:
    # A newer writer's extra field is ignored; an older record's missing one defaulted.
    data = json.loads(ObjectRecord("k", "v", 1, '"e"', 2.0).encode()[1:])
    newer = b"\x01" + json.dumps({**data, "future": 1}).encode()
    assert ObjectRecord.decode(newer) == ObjectRecord("k", "v", 1, '"e"', 2.0)
    del data["upload_id"], data["parts"]
    older = ObjectRecord.decode(b"\x01" + json.dumps(data).encode())
    assert older == ObjectRecord("k", "v", 1, '"e"', 2.0) and older.upload_id == ""
    # whitespace around the JSON is accepted as before
    spaced = ObjectRecord.decode(b"\x01 " + json.dumps(data).encode() + b"\n")
    assert spaced == older
    assert BucketRecord.decode(BucketRecord("b", "o", 1.0).encode()) == BucketRecord("b", "o", 1.0)
    user = UserRecord("AK", "SK", "id", "name", 3.0)
    assert UserRecord.decode(user.encode()) == user
    with pytest.raises(json.JSONDecodeError):
        ObjectRecord.decode(b"\x01{} x")


def test_decoded_records_share_nothing() -> None:
    raw = ObjectRecord("k", "v", 1, '"e"', 2.0, user_meta={"a": "b"}).encode()
    one, two = ObjectRecord.decode(raw), ObjectRecord.decode(raw)
    one.user_meta["c"] = "d"
    one.size = 5
    assert two.user_meta == {"a": "b"} and two.size == 1


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=st.lists(
        st.one_of(
            st.text(st.sampled_from("ab/é"), min_size=1, max_size=6),
            st.text(
                st.sampled_from("ab"), min_size=catalog.LONG_KEY, max_size=catalog.LONG_KEY + 3
            ),
        ),
        max_size=25,
        unique=True,
    ),
    delimiter=st.sampled_from(["", "/"]),
    max_keys=st.integers(min_value=1, max_value=30),
)
def test_list_page_listed_matches_objects(
    tmp_path: Path, keys: list[str], delimiter: str, max_keys: int
) -> None:
    store = MetaStore(Path(tempfile.mkdtemp(dir=tmp_path)))  # one per example
    store.open()
    try:

        def fill(tx: Tx) -> None:
            for i, key in enumerate(keys):
                record = ObjectRecord(key, f"v{i}", i, f'"{i:032x}"', 1.7e9 + i / 7, parts=i)
                catalog.put_object(tx, "b", record)

        store.write_sync(fill)
        page = store.read(
            lambda tx: catalog.list_objects(tx, "b", delimiter=delimiter, max_keys=max_keys)
        )
        assert page.listed() == [ListedObject.of(r) for r in page.objects]
        assert page.objects is page.objects  # decoded once
        assert [r.volume_id for r in page.objects] == [
            f"v{keys.index(r.key)}" for r in page.objects
        ]
    finally:
        store.close()
