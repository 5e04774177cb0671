"""Record encoding from the instance's attribute dict writes what ``asdict`` + json did."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stratum.meta.records import (
    MULTI,
    SINGLE,
    BucketRecord,
    ObjectRecord,
    PartRecord,
    UploadRecord,
    UserRecord,
    VolumeRecord,
    decode_objects,
    encode_object_list,
)

TEXT = st.text(max_size=20)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=10,
)
DICTS = st.dictionaries(TEXT, JSON, max_size=4)
TIMES = st.floats(0, 4e9, allow_nan=False)


def old_encoding(record: Any) -> bytes:
    """How records were encoded before: a deep copy by asdict, then json.dumps."""
    return SINGLE + json.dumps(asdict(record), separators=(",", ":"), ensure_ascii=False).encode()


OBJECTS = st.builds(
    ObjectRecord,
    key=TEXT,
    volume_id=TEXT,
    size=st.integers(0, 2**50),
    etag=TEXT,
    last_modified=TIMES,
    user_meta=st.dictionaries(TEXT, TEXT, max_size=3),
    headers=st.dictionaries(TEXT, TEXT, max_size=3),
    checksums=st.dictionaries(TEXT, TEXT, max_size=2),
    owner_id=TEXT,
)
RECORDS = st.one_of(
    st.builds(BucketRecord, name=TEXT, owner_id=TEXT, created=TIMES, region=TEXT),
    OBJECTS,
    st.builds(
        VolumeRecord,
        volume_id=TEXT,
        tier=TEXT,
        layout=TEXT,
        location=DICTS,
        size=st.integers(0, 2**50),
        md5=TEXT,
        created=TIMES,
        part_sizes=st.lists(st.integers(0, 2**40), max_size=4),
        recent=st.lists(TIMES, max_size=4),
        placed=DICTS,
    ),
    st.builds(
        UserRecord,
        access_key=TEXT,
        secret_key=TEXT,
        canonical_id=TEXT,
        display_name=TEXT,
        created=TIMES,
    ),
    st.builds(
        UploadRecord,
        upload_id=TEXT,
        bucket=TEXT,
        key=TEXT,
        owner_id=TEXT,
        initiated=TIMES,
        user_meta=st.dictionaries(TEXT, TEXT, max_size=3),
    ),
    st.builds(
        PartRecord,
        part_number=st.integers(1, 10000),
        volume_id=TEXT,
        size=st.integers(0, 2**40),
        etag=TEXT,
        last_modified=TIMES,
    ),
)


@settings(max_examples=300)
@given(record=RECORDS)
def test_encoding_is_unchanged_and_round_trips(record: Any) -> None:
    raw = record.encode()
    assert raw == old_encoding(record)
    assert type(record).decode(raw) == record


@settings(max_examples=100)
@given(records=st.lists(OBJECTS, max_size=4))
def test_object_lists_encode_as_before(records: list[ObjectRecord]) -> None:
    raw = encode_object_list(records)
    old = [asdict(r) for r in records]
    assert raw == MULTI + json.dumps(old, separators=(",", ":"), ensure_ascii=False).encode()
    assert decode_objects(raw) == records


@dataclass
class _Inner:
    a: int
    b: list[str]


def test_a_dataclass_nested_in_a_field_is_written_as_asdict_wrote_it() -> None:
    record = VolumeRecord("v", "hot", "seg", {"inner": _Inner(1, ["x"])}, 1, "m", 1.0)
    assert record.encode() == old_encoding(record)
    assert VolumeRecord.decode(record.encode()).location == {"inner": {"a": 1, "b": ["x"]}}
