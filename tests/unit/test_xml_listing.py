"""The one-pass rendering of a listing's entries is what the XmlWriter's elements give.

The reference below writes each entry element by element, as the writer does for every
other response; the listing functions must produce the same bytes, for ObjectEntry
(with its own owner), for the records a listing reads (ListedObject, with the result's
owner) and with either encoding type; and ListObjectVersions' versions and delete markers,
interleaved, likewise.
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
    want = _body(reference("R", "Contents", entries, encoding_type), b"<Contents>", b"</Contents>")
    assert _body(v1, b"<Contents>", b"</Contents>") == want
    assert _body(v2, b"<Contents>", b"</Contents>") == want


@st.composite
def version_entries(draw: st.DrawFn) -> x.VersionEntry:
    item = draw(listed())
    return x.VersionEntry(
        key=item.key,
        version_id=draw(st.one_of(st.just("null"), st.from_regex(r"[0-9a-f]{32}", fullmatch=True))),
        is_latest=draw(st.booleans()),
        last_modified=item.last_modified,
        etag=item.etag,
        size=item.size,
        storage_class=item.storage_class or "STANDARD",
        delete_marker=draw(st.booleans()),
    )


def version_reference(
    entries: list[x.VersionEntry], owner: x.Owner | None, encoding_type: str | None
) -> bytes:
    enc = x._encoder(encoding_type)
    w = x.XmlWriter("R", listing=True)
    for e in entries:
        w.start("DeleteMarker" if e.delete_marker else "Version")
        w.leaf("Key", enc(e.key))
        w.leaf("VersionId", e.version_id)
        w.leaf("IsLatest", e.is_latest)
        w.leaf("LastModified", x.timestamp(e.last_modified))
        if not e.delete_marker:
            w.leaf("ETag", x.quote_etag(e.etag))
            w.leaf("Size", e.size)
            w.leaf("StorageClass", e.storage_class)
        if owner is not None:
            x._owner(w, "Owner", owner)
        w.end()
    return w.finish()


@settings(max_examples=200, deadline=None)
@given(
    entries=st.lists(version_entries(), max_size=6),
    owner=OWNERS,
    encoding_type=st.sampled_from([None, "url"]),
)
def test_version_entries_render_as_the_writer_would(
    entries: list[x.VersionEntry], owner: x.Owner | None, encoding_type: str | None
) -> None:
    body = x.list_object_versions(
        x.ListObjectVersionsResult(
            "b", "", "", "", 1000, False, entries, encoding_type=encoding_type, owner=owner
        )
    )
    want = version_reference(entries, owner, encoding_type)
    start = want.find(b"<R xmlns")
    inner = want[want.index(b">", start) + 1 : want.rindex(b"</R>")]
    assert inner in body
    assert body.count(b"<Version>") + body.count(b"<DeleteMarker>") == len(entries)


def test_an_entrys_own_owner_wins() -> None:
    mine, theirs = x.Owner("me", "Me"), x.Owner("them", "Them")
    entry = x.ObjectEntry("k", 0.0, "e", 1, owner=mine)
    plain = ListedObject("l", 0.0, "e", 1, "")
    body = x.list_objects_v2(x.ListObjectsV2Result("b", "", 2, False, [entry, plain], owner=theirs))
    assert body.count(b"<ID>me</ID>") == 1 and body.count(b"<ID>them</ID>") == 1
    assert b"<Key>l</Key><LastModified>1970-01-01T00:00:00.000Z</LastModified>" in body
    assert b"<StorageClass>STANDARD</StorageClass>" in body
