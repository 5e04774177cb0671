"""The one-pass rendering of a listing's entries is what the XmlWriter's elements give.

The reference below writes each entry element by element, as the writer does for every
other response; the listing functions must produce the same bytes, for ObjectEntry
(with its own owner), for the records a listing reads (ListedObject, with the result's
owner) and with either encoding type.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stratum.meta.records import ListedObject
from stratum.s3 import xml as x

KEYS = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["a&b", "<k>", "x\ry", "t\tz", "ctl\x01", "\ud800", "a b+c", "é/✓"]),
)
OWNERS = st.one_of(st.none(), st.builds(x.Owner, KEYS, KEYS))


@st.composite
def listed(draw: st.DrawFn) -> ListedObject:
    return ListedObject(
        key=draw(KEYS),
        last_modified=draw(st.floats(min_value=0, max_value=4e9, allow_nan=False)),
        etag=draw(st.one_of(st.from_regex(r'"?[0-9a-f]{4}"?', fullmatch=True), KEYS)),
        size=draw(st.integers(min_value=0, max_value=2**50)),
        storage_class=draw(st.sampled_from(["", "STANDARD", "GLACIER_IR", "a&b"])),
    )


def reference(
    root: str, tag: str, entries: list[x.ObjectEntry], encoding_type: str | None
) -> bytes:
    enc = x._encoder(encoding_type)
    w = x.XmlWriter(root, listing=True)
    for e in entries:
        w.start(tag)
        w.leaf("Key", enc(e.key))
        if tag == "Version":
            w.leaf("VersionId", "null")
            w.leaf("IsLatest", True)
        w.leaf("LastModified", x.timestamp(e.last_modified))
        w.leaf("ETag", x.quote_etag(e.etag))
        w.leaf("Size", e.size)
        w.leaf("StorageClass", e.storage_class)
        if e.owner is not None:
            x._owner(w, "Owner", e.owner)
        w.end()
    return w.finish()


def _as_entries(items: list[ListedObject], owner: x.Owner | None) -> list[x.ObjectEntry]:
    return [
        x.ObjectEntry(i.key, i.last_modified, i.etag, i.size, i.storage_class or "STANDARD", owner)
        for i in items
    ]


def _body(document: bytes, first: bytes, last: bytes) -> bytes:
    """The entries' part of a listing document: from the first entry to the last's end."""
    start = document.find(first)
    return document[start : document.rfind(last) + len(last)] if start >= 0 else b""


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(listed(), max_size=6),
    owner=OWNERS,
    encoding_type=st.sampled_from([None, "url"]),
    entries_carry_owner=st.booleans(),
)
def test_entries_render_as_the_writer_would(
    items: list[ListedObject],
    owner: x.Owner | None,
    encoding_type: str | None,
    entries_carry_owner: bool,
) -> None:
    entries = _as_entries(items, owner)
    # The same entries, given either as ObjectEntry with their owner or as records with
    # the owner on the result.
    contents: list[x.Listed] = list(entries) if entries_carry_owner else list(items)
    common = owner if not entries_carry_owner else None
    v1 = x.list_objects_v1(
        x.ListObjectsV1Result(
            "b", "", "", 1000, False, contents, encoding_type=encoding_type, owner=common
        )
    )
    v2 = x.list_objects_v2(
        x.ListObjectsV2Result(
            "b", "", 1000, False, contents, encoding_type=encoding_type, owner=common
        )
    )
    versions = x.list_object_versions(
        x.ListObjectVersionsResult(
            "b", "", "", "", 1000, False, contents, encoding_type=encoding_type, owner=common
        )
    )
    want = _body(reference("R", "Contents", entries, encoding_type), b"<Contents>", b"</Contents>")
    assert _body(v1, b"<Contents>", b"</Contents>") == want
    assert _body(v2, b"<Contents>", b"</Contents>") == want
    want = _body(reference("R", "Version", entries, encoding_type), b"<Version>", b"</Version>")
    assert _body(versions, b"<Version>", b"</Version>") == want


def test_an_entrys_own_owner_wins() -> None:
    mine, theirs = x.Owner("me", "Me"), x.Owner("them", "Them")
    entry = x.ObjectEntry("k", 0.0, "e", 1, owner=mine)
    plain = ListedObject("l", 0.0, "e", 1, "")
    body = x.list_objects_v2(x.ListObjectsV2Result("b", "", 2, False, [entry, plain], owner=theirs))
    assert body.count(b"<ID>me</ID>") == 1 and body.count(b"<ID>them</ID>") == 1
    assert b"<Key>l</Key><LastModified>1970-01-01T00:00:00.000Z</LastModified>" in body
    assert b"<StorageClass>STANDARD</StorageClass>" in body
