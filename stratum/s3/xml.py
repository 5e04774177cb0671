"""S3 response bodies: a tiny escaping XML writer and one render function per response.

Every function returns the complete body as UTF-8 bytes, starting with
``<?xml version="1.0" encoding="UTF-8"?>``; the root carries
``xmlns="http://s3.amazonaws.com/doc/2006-03-01/"`` except ``Error``, which AWS sends
without a namespace. Values are never spliced into templates: all text goes through
:func:`escape_text` and attribute values through :func:`escape_attr`.

Characters XML 1.0 cannot carry
    Text is escaped for ``& < >``; ``\\r`` is written ``&#13;`` so parsers do not fold it
    into ``\\n``. Code points XML 1.0 forbids outright (C0 controls other than tab, LF,
    CR; U+FFFE/U+FFFF) cannot be written even as character references. Listings
    (ListObjects, ListObjectsV2, ListObjectVersions, ListMultipartUploads) write them as AWS
    does, ``&#x1;``-style references (:func:`escape_listed`): exact, but strict parsers
    (expat, so botocore) reject the document, and AWS's answer is the one this is meant to
    match; clients that need such keys list with ``encoding-type=url`` (boto3 and the AWS
    CLI always do), which percent-encodes keys first so that nothing is lost. Other
    responses only echo a name the client sent and offer no such choice, so there they are
    replaced by U+FFFD and the document stays well-formed (:func:`escape_text`). Lone
    surrogates (bytes of a key that were not UTF-8) become U+FFFD everywhere.

``encoding-type=url``
    :func:`url_encode` encodes like AWS (Java's ``URLEncoder`` with ``/`` kept): letters,
    digits and ``-_.*/`` stay, space becomes ``+``, every other UTF-8 byte ``%XX``. Clients
    decode with ``unquote_plus`` (botocore's ``decode_list_object*`` handlers). It is
    applied to Key, Prefix, Delimiter, Marker, NextMarker, StartAfter, KeyMarker,
    NextKeyMarker and CommonPrefixes/Prefix, the fields AWS documents; continuation tokens
    and upload/version id markers are opaque and never encoded (botocore does not decode
    them, so encoding would break the round trip).

Element order follows the example responses in AWS's API reference (and MinIO, which
mirrors AWS), not the alphabetical-ish "Response Syntax" blocks; SDKs parse by name, so
order only matters to people diffing responses. Timestamps are epoch seconds (float), rendered
``2006-02-27T12:00:00.000Z``. ETags are passed unquoted and rendered in double quotes (an
already quoted ETag is left as is).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"
PROLOG = '<?xml version="1.0" encoding="UTF-8"?>\n'

_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_FORBIDDEN_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_TEXT_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")  # no ":": a prefix would need a binding


def escape_text(value: str) -> str:
    """Escape character data (see the module docstring for forbidden characters)."""
    if _TEXT_SPECIAL.search(value) is None:  # the common case: nothing to do
        return value
    value = _ILLEGAL.sub("\ufffd", value)
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def escape_listed(value: str) -> str:
    """Escape character data of a listing: as :func:`escape_text`, but the characters XML
    1.0 forbids become ``&#x1;``-style references, as in AWS's listings."""
    if _TEXT_SPECIAL.search(value) is None:
        return value
    value = _SURROGATE.sub("\ufffd", value)
    value = (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )
    return _FORBIDDEN_CHAR.sub(_char_ref, value)


def _char_ref(match: re.Match[str]) -> str:
    return f"&#x{ord(match.group()):x};"


def escape_attr(value: str) -> str:
    """Escape a double-quoted attribute value (whitespace kept through normalisation)."""
    value = escape_text(value).replace('"', "&quot;").replace("'", "&apos;")
    return value.replace("\n", "&#10;").replace("\t", "&#9;")


def url_encode(value: str) -> str:
    """``encoding-type=url`` as AWS does it; decodes with ``urllib.parse.unquote_plus``."""
    if _URL_SAFE.fullmatch(value):
        return value
    return _URL_UNSAFE.sub(_percent_encode, value)


_URL_SAFE = re.compile(r"[A-Za-z0-9_.*/-]*")
_URL_UNSAFE = re.compile(r"[^A-Za-z0-9_.*/-]+")
_PERCENT = [f"%{b:02X}" for b in range(256)]
_PERCENT[0x20] = "+"


def _percent_encode(match: re.Match[str]) -> str:
    return "".join([_PERCENT[b] for b in match.group().encode("utf-8", "replace")])


def timestamp(epoch: float) -> str:
    """ISO 8601 with milliseconds in UTC, as S3 writes LastModified."""
    seconds, ms = divmod(round(epoch * 1000), 1000)
    return f"{_second(seconds)}.{ms:03d}Z"


@functools.lru_cache(maxsize=4096)  # a listing's objects were often written in the same second
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def quote_etag(etag: str) -> str:
    return etag if len(etag) >= 2 and etag[0] == etag[-1] == '"' else f'"{etag}"'


class XmlWriter:
    """Append-only writer: ``start``/``end`` elements, ``leaf`` for text-only elements.

    Element names are written as given: they are constants of this module, except names
    that come from data (error extras, checksum names), which go through :func:`check_name`.
    ``finish`` closes whatever is still open.
    """

    __slots__ = ("_escape", "_open", "_parts")

    def __init__(
        self, root: str, *, namespace: str | None = S3_NAMESPACE, listing: bool = False
    ) -> None:
        """``listing``: text goes through :func:`escape_listed`, else :func:`escape_text`."""
        self._parts: list[str] = [PROLOG]
        self._open: list[str] = []
        self._escape = escape_listed if listing else escape_text
        self.start(root, {"xmlns": namespace} if namespace else None)

    def start(self, tag: str, attrs: Mapping[str, str] | None = None) -> None:
        if attrs:
            rendered = "".join(f' {name}="{escape_attr(v)}"' for name, v in attrs.items())
            self._parts.append(f"<{tag}{rendered}>")
        else:
            self._parts.append(f"<{tag}>")
        self._open.append(tag)

    def end(self) -> None:
        self._parts.append(f"</{self._open.pop()}>")

    def leaf(self, tag: str, value: str | int | bool) -> None:
        """``<tag>value</tag>``; booleans as ``true``/``false``, ``""`` as ``<tag></tag>``."""
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = self._escape(value)
        self._parts.append(f"<{tag}>{text}</{tag}>")

    def text(self, value: str) -> None:
        self._parts.append(self._escape(value))

    def raw(self, markup: str) -> None:
        """Append ready-made markup: every value in it must already be escaped."""
        self._parts.append(markup)

    def optional(self, tag: str, value: str | int | bool | None) -> None:
        if value is not None:
            self.leaf(tag, value)

    def finish(self) -> bytes:
        while self._open:
            self.end()
        return "".join(self._parts).encode("utf-8")


def check_name(name: str) -> str:
    """Return ``name`` if it is a plain XML element name, else raise ValueError."""
    if _NAME.fullmatch(name) is None:
        raise ValueError(f"not an XML element name: {name!r}")
    return name


# --- shared values ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Owner:
    id: str
    display_name: str


class Listed(Protocol):
    """What a listing shows of an object: an :class:`ObjectEntry`, or anything with these
    attributes (the metadata's ``ListedObject``, an ``ObjectRecord``), so that a page of
    1,000 keys needs no ObjectEntry each. An empty ``storage_class`` (no explicit class)
    is shown as ``STANDARD``."""

    @property
    def key(self) -> str: ...
    @property
    def last_modified(self) -> float: ...
    @property
    def etag(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def storage_class(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    """One object of a listing. ``owner`` is rendered only when set (v1 always sets it,
    v2 when ``fetch-owner=true``); it wins over the result's ``owner``."""

    key: str
    last_modified: float
    etag: str
    size: int
    storage_class: str = "STANDARD"
    owner: Owner | None = None


def _owner(w: XmlWriter, tag: str, owner: Owner) -> None:
    w.start(tag)
    w.leaf("ID", owner.id)
    w.leaf("DisplayName", owner.display_name)
    w.end()


def _owner_markup(owner: Owner) -> str:
    """An entry's ``<Owner>``, as a listing's writer gives it."""
    return (
        f"<Owner><ID>{escape_listed(owner.id)}</ID>"
        f"<DisplayName>{escape_listed(owner.display_name)}</DisplayName></Owner>"
    )


def _encoder(encoding_type: str | None) -> Callable[[str], str]:
    if encoding_type is None:
        return _identity
    if encoding_type != "url":
        raise ValueError(f"unknown encoding type {encoding_type!r}")
    return url_encode


def _identity(value: str) -> str:
    return value


def _common_prefixes(w: XmlWriter, prefixes: Sequence[str], enc: Callable[[str], str]) -> None:
    for prefix in prefixes:
        w.start("CommonPrefixes")
        w.leaf("Prefix", enc(prefix))
        w.end()


# --- errors and service -----------------------------------------------------------------


def error_xml(
    code: str,
    message: str,
    resource: str | None,
    request_id: str,
    extra: Mapping[str, str],
    host_id: str = "",
) -> bytes:
    """``<Error>``: Code, Message, the extras (BucketName, Key, ArgumentName...), Resource,
    RequestId, HostId. No namespace, as AWS."""
    w = XmlWriter("Error", namespace=None)
    w.leaf("Code", code)
    w.leaf("Message", message)
    for name, value in extra.items():
        w.leaf(check_name(name), value)
    w.optional("Resource", resource)
    w.leaf("RequestId", request_id)
    w.leaf("HostId", host_id)
    return w.finish()


@dataclass(frozen=True, slots=True)
class BucketEntry:
    name: str
    creation_date: float
    region: str | None = None  # shown (BucketRegion) when the request paginated


def list_buckets(
    owner: Owner,
    buckets: Sequence[BucketEntry],
    *,
    continuation_token: str | None = None,
    prefix: str | None = None,
) -> bytes:
    w = XmlWriter("ListAllMyBucketsResult")
    _owner(w, "Owner", owner)
    w.start("Buckets")
    for bucket in buckets:
        w.start("Bucket")
        w.leaf("Name", bucket.name)
        w.leaf("CreationDate", timestamp(bucket.creation_date))
        w.optional("BucketRegion", bucket.region)
        w.end()
    w.end()
    w.optional("ContinuationToken", continuation_token)
    w.optional("Prefix", prefix)
    return w.finish()


# --- listings ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListObjectsV1Result:
    bucket: str
    prefix: str
    marker: str
    max_keys: int
    is_truncated: bool
    contents: Sequence[Listed]
    common_prefixes: Sequence[str] = ()
    delimiter: str | None = None
    next_marker: str | None = None  # AWS sends it only with a delimiter and when truncated
    encoding_type: str | None = None
    owner: Owner | None = None  # shown in every entry (AWS shows the owner in v1 listings)


@dataclass(frozen=True, slots=True)
class ListObjectsV2Result:
    bucket: str
    prefix: str
    max_keys: int
    is_truncated: bool
    contents: Sequence[Listed]
    common_prefixes: Sequence[str] = ()
    delimiter: str | None = None
    start_after: str | None = None
    continuation_token: str | None = None
    next_continuation_token: str | None = None
    encoding_type: str | None = None
    owner: Owner | None = None  # shown in every entry (with fetch-owner=true)


_CONTENTS = ("<Contents><Key>", "</Key><LastModified>", "</Contents>")


def _entries(
    entries: Sequence[Listed],
    encoding_type: str | None,
    owner: Owner | None,
    shape: tuple[str, str, str],
) -> str:
    """The markup of a listing's objects, in one pass: every listed key costs this loop.

    The same text the writer's ``leaf`` calls would give, without a call per element:
    values go through :func:`escape_listed` only when the one search for a character it
    would change finds one; the owner's markup is made once per listing."""
    head, mid, close = shape
    enc = None if encoding_type is None else _encoder(encoding_type)
    special, esc, second = _TEXT_SPECIAL.search, escape_listed, _second
    shared_tail = close if owner is None else _owner_markup(owner) + close
    out: list[str] = []
    add = out.append
    for e in entries:
        key = e.key if enc is None else enc(e.key)
        etag = e.etag
        if len(etag) < 2 or etag[0] != '"' or etag[-1] != '"':  # quote_etag, inline
            etag = f'"{etag}"'
        storage_class = e.storage_class or "STANDARD"
        if special(f"{key}{etag}{storage_class}"):  # one search, not three
            key, etag, storage_class = esc(key), esc(etag), esc(storage_class)
        tail = shared_tail
        if isinstance(e, ObjectEntry) and e.owner is not None:
            tail = _owner_markup(e.owner) + close
        seconds, ms = divmod(round(e.last_modified * 1000), 1000)
        add(
            f"{head}{key}{mid}{second(seconds)}.{ms:03d}Z</LastModified>"
            f"<ETag>{etag}</ETag><Size>{int(e.size)}</Size>"
            f"<StorageClass>{storage_class}</StorageClass>{tail}"
        )
    return "".join(out)


def list_objects_v1(result: ListObjectsV1Result) -> bytes:
    enc = _encoder(result.encoding_type)
    w = XmlWriter("ListBucketResult", listing=True)
    w.leaf("Name", result.bucket)
    # v1 echoes Prefix as sent even with encoding-type=url (AWS; boto3, which asks for url
    # encoding on its own, decodes Marker and Delimiter of a v1 listing but not Prefix).
    w.leaf("Prefix", result.prefix)
    w.leaf("Marker", enc(result.marker))
    if result.next_marker is not None:
        w.leaf("NextMarker", enc(result.next_marker))
    w.leaf("MaxKeys", result.max_keys)
    if result.delimiter is not None:
        w.leaf("Delimiter", enc(result.delimiter))
    w.optional("EncodingType", result.encoding_type)
    w.leaf("IsTruncated", result.is_truncated)
    w.raw(_entries(result.contents, result.encoding_type, result.owner, _CONTENTS))
    _common_prefixes(w, result.common_prefixes, enc)
    return w.finish()


def list_objects_v2(result: ListObjectsV2Result) -> bytes:
    enc = _encoder(result.encoding_type)
    w = XmlWriter("ListBucketResult", listing=True)
    w.leaf("Name", result.bucket)
    w.leaf("Prefix", enc(result.prefix))
    if result.start_after is not None:
        w.leaf("StartAfter", enc(result.start_after))
    w.optional("ContinuationToken", result.continuation_token)
    w.optional("NextContinuationToken", result.next_continuation_token)
    w.leaf("KeyCount", len(result.contents) + len(result.common_prefixes))
    w.leaf("MaxKeys", result.max_keys)
    if result.delimiter is not None:
        w.leaf("Delimiter", enc(result.delimiter))
    w.optional("EncodingType", result.encoding_type)
    w.leaf("IsTruncated", result.is_truncated)
    w.raw(_entries(result.contents, result.encoding_type, result.owner, _CONTENTS))
    _common_prefixes(w, result.common_prefixes, enc)
    return w.finish()


@dataclass(frozen=True, slots=True)
class VersionEntry:
    """One version of a ListObjectVersions page: an object version or a delete marker
    (which has no ETag, size or storage class)."""

    key: str
    version_id: str
    is_latest: bool
    last_modified: float
    etag: str = ""
    size: int = 0
    storage_class: str = "STANDARD"
    delete_marker: bool = False


@dataclass(frozen=True, slots=True)
class ListObjectVersionsResult:
    bucket: str
    prefix: str
    key_marker: str
    version_id_marker: str
    max_keys: int
    is_truncated: bool
    versions: Sequence[VersionEntry]
    common_prefixes: Sequence[str] = ()
    delimiter: str | None = None
    next_key_marker: str | None = None
    next_version_id_marker: str | None = None
    encoding_type: str | None = None
    owner: Owner | None = None  # shown in every entry


def list_object_versions(result: ListObjectVersionsResult) -> bytes:
    enc = _encoder(result.encoding_type)
    w = XmlWriter("ListVersionsResult", listing=True)
    w.leaf("Name", result.bucket)
    w.leaf("Prefix", enc(result.prefix))
    w.leaf("KeyMarker", enc(result.key_marker))
    w.leaf("VersionIdMarker", result.version_id_marker)
    if result.next_key_marker is not None:
        w.leaf("NextKeyMarker", enc(result.next_key_marker))
    w.optional("NextVersionIdMarker", result.next_version_id_marker)
    w.leaf("MaxKeys", result.max_keys)
    if result.delimiter is not None:
        w.leaf("Delimiter", enc(result.delimiter))
    w.optional("EncodingType", result.encoding_type)
    w.leaf("IsTruncated", result.is_truncated)
    w.raw(_version_entries(result.versions, enc, result.owner))
    _common_prefixes(w, result.common_prefixes, enc)
    return w.finish()


def _version_entries(
    entries: Sequence[VersionEntry], enc: Callable[[str], str], owner: Owner | None
) -> str:
    """``Version`` and ``DeleteMarker`` elements in the page's order, as AWS interleaves them
    (elements in the order of AWS's example response), escaped as a listing's text."""
    owner_markup = "" if owner is None else _owner_markup(owner)
    out: list[str] = []
    add = out.append
    for e in entries:
        head = (
            f"<Key>{escape_listed(enc(e.key))}</Key>"
            f"<VersionId>{escape_listed(e.version_id)}</VersionId>"
            f"<IsLatest>{'true' if e.is_latest else 'false'}</IsLatest>"
            f"<LastModified>{timestamp(e.last_modified)}</LastModified>"
        )
        if e.delete_marker:
            add(f"<DeleteMarker>{head}{owner_markup}</DeleteMarker>")
            continue
        add(
            f"<Version>{head}<ETag>{escape_listed(quote_etag(e.etag))}</ETag>"
            f"<Size>{int(e.size)}</Size>"
            f"<StorageClass>{escape_listed(e.storage_class or 'STANDARD')}</StorageClass>"
            f"{owner_markup}</Version>"
        )
    return "".join(out)


# --- bucket configuration ---------------------------------------------------------------


def location_constraint(region: str | None) -> bytes:
    """``us-east-1`` (and no region) is an empty element, as AWS answers for it."""
    w = XmlWriter("LocationConstraint")
    if region and region != "us-east-1":
        w.text(region)
    return w.finish()


def versioning_configuration(status: str | None = None) -> bytes:
    """Empty for a bucket that never had versioning; ``Status`` Enabled/Suspended later."""
    w = XmlWriter("VersioningConfiguration")
    w.optional("Status", status)
    return w.finish()


@dataclass(frozen=True, slots=True)
class GrantEntry:
    """One grant of an ACL: to a user (``user``, an :class:`Owner`) or a group (``uri``)."""

    permission: str
    user: Owner | None = None
    uri: str | None = None


def access_control_policy(owner: Owner, grants: Sequence[GrantEntry] | None = None) -> bytes:
    """GetBucketAcl / GetObjectAcl: the owner and its grants (by default the canned
    ``private`` ACL: one FULL_CONTROL grant to the owner)."""
    if grants is None:
        grants = [GrantEntry("FULL_CONTROL", user=owner)]
    w = XmlWriter("AccessControlPolicy")
    _owner(w, "Owner", owner)
    w.start("AccessControlList")
    for grant in grants:
        w.start("Grant")
        if grant.user is not None:
            w.start("Grantee", {"xmlns:xsi": XSI_NAMESPACE, "xsi:type": "CanonicalUser"})
            w.leaf("ID", grant.user.id)
            w.leaf("DisplayName", grant.user.display_name)
        else:
            w.start("Grantee", {"xmlns:xsi": XSI_NAMESPACE, "xsi:type": "Group"})
            w.leaf("URI", grant.uri or "")
        w.end()
        w.leaf("Permission", grant.permission)
        w.end()
    return w.finish()


def tagging(tags: Sequence[tuple[str, str]]) -> bytes:
    w = XmlWriter("Tagging")
    w.start("TagSet")
    for key, value in tags:
        w.start("Tag")
        w.leaf("Key", key)
        w.leaf("Value", value)
        w.end()
    return w.finish()


# --- object operations ------------------------------------------------------------------


def copy_object_result(etag: str, last_modified: float) -> bytes:
    return _copy_result("CopyObjectResult", etag, last_modified)


def copy_part_result(etag: str, last_modified: float) -> bytes:
    """UploadPartCopy's body: the same shape under ``CopyPartResult``."""
    return _copy_result("CopyPartResult", etag, last_modified)


def _copy_result(root: str, etag: str, last_modified: float) -> bytes:
    w = XmlWriter(root)
    w.leaf("LastModified", timestamp(last_modified))
    w.leaf("ETag", quote_etag(etag))
    return w.finish()


@dataclass(frozen=True, slots=True)
class DeletedEntry:
    key: str
    version_id: str | None = None
    delete_marker: bool = False  # a delete marker was made, or removed by its version id
    delete_marker_version_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteError:
    key: str
    code: str
    message: str
    version_id: str | None = None


def delete_result(
    deleted: Sequence[DeletedEntry], errors: Sequence[DeleteError], quiet: bool
) -> bytes:
    """DeleteObjects' answer; in quiet mode only the errors are listed."""
    w = XmlWriter("DeleteResult")
    if not quiet:
        for d in deleted:
            w.start("Deleted")
            w.leaf("Key", d.key)
            w.optional("VersionId", d.version_id)
            if d.delete_marker:
                w.leaf("DeleteMarker", True)
                w.optional("DeleteMarkerVersionId", d.delete_marker_version_id)
            w.end()
    for e in errors:
        w.start("Error")
        w.leaf("Key", e.key)
        w.optional("VersionId", e.version_id)
        w.leaf("Code", e.code)
        w.leaf("Message", e.message)
        w.end()
    return w.finish()


# --- multipart uploads ------------------------------------------------------------------


def initiate_multipart_upload(bucket: str, key: str, upload_id: str) -> bytes:
    w = XmlWriter("InitiateMultipartUploadResult")
    w.leaf("Bucket", bucket)
    w.leaf("Key", key)
    w.leaf("UploadId", upload_id)
    return w.finish()


def complete_multipart_upload(
    location: str, bucket: str, key: str, etag: str, checksums: Mapping[str, str] | None = None
) -> bytes:
    """``checksums``: element name (``ChecksumSHA256``, ``ChecksumType``) -> value."""
    w = XmlWriter("CompleteMultipartUploadResult")
    w.leaf("Location", location)
    w.leaf("Bucket", bucket)
    w.leaf("Key", key)
    w.leaf("ETag", quote_etag(etag))
    for name, value in (checksums or {}).items():
        w.leaf(check_name(name), value)
    return w.finish()


@dataclass(frozen=True, slots=True)
class PartEntry:
    part_number: int
    last_modified: float
    etag: str
    size: int
    checksums: Mapping[str, str] = field(default_factory=dict)  # e.g. {"ChecksumCRC32": ...}


@dataclass(frozen=True, slots=True)
class ListPartsResult:
    bucket: str
    key: str
    upload_id: str
    owner: Owner
    part_number_marker: int
    max_parts: int
    is_truncated: bool
    parts: Sequence[PartEntry]
    next_part_number_marker: int | None = None
    storage_class: str = "STANDARD"
    initiator: Owner | None = None  # defaults to the owner


def list_parts(result: ListPartsResult) -> bytes:
    w = XmlWriter("ListPartsResult")
    w.leaf("Bucket", result.bucket)
    w.leaf("Key", result.key)
    w.leaf("UploadId", result.upload_id)
    _owner(w, "Initiator", result.initiator or result.owner)
    _owner(w, "Owner", result.owner)
    w.leaf("StorageClass", result.storage_class)
    w.leaf("PartNumberMarker", result.part_number_marker)
    w.optional("NextPartNumberMarker", result.next_part_number_marker)
    w.leaf("MaxParts", result.max_parts)
    w.leaf("IsTruncated", result.is_truncated)
    for p in result.parts:
        w.start("Part")
        w.leaf("PartNumber", p.part_number)
        w.leaf("LastModified", timestamp(p.last_modified))
        w.leaf("ETag", quote_etag(p.etag))
        w.leaf("Size", p.size)
        for name, value in p.checksums.items():
            w.leaf(check_name(name), value)
        w.end()
    return w.finish()


@dataclass(frozen=True, slots=True)
class UploadEntry:
    key: str
    upload_id: str
    initiated: float
    owner: Owner
    storage_class: str = "STANDARD"


@dataclass(frozen=True, slots=True)
class ListMultipartUploadsResult:
    bucket: str
    key_marker: str
    upload_id_marker: str
    max_uploads: int
    is_truncated: bool
    uploads: Sequence[UploadEntry]
    common_prefixes: Sequence[str] = ()
    prefix: str = ""
    delimiter: str | None = None
    next_key_marker: str | None = None
    next_upload_id_marker: str | None = None
    encoding_type: str | None = None


def list_multipart_uploads(result: ListMultipartUploadsResult) -> bytes:
    enc = _encoder(result.encoding_type)
    w = XmlWriter("ListMultipartUploadsResult", listing=True)
    w.leaf("Bucket", result.bucket)
    w.leaf("KeyMarker", enc(result.key_marker))
    w.leaf("UploadIdMarker", result.upload_id_marker)
    if result.next_key_marker is not None:
        w.leaf("NextKeyMarker", enc(result.next_key_marker))
    w.optional("NextUploadIdMarker", result.next_upload_id_marker)
    if result.delimiter is not None:
        w.leaf("Delimiter", enc(result.delimiter))
    w.leaf("Prefix", enc(result.prefix))
    w.optional("EncodingType", result.encoding_type)
    w.leaf("MaxUploads", result.max_uploads)
    w.leaf("IsTruncated", result.is_truncated)
    for u in result.uploads:
        w.start("Upload")
        w.leaf("Key", enc(u.key))
        w.leaf("UploadId", u.upload_id)
        _owner(w, "Initiator", u.owner)
        _owner(w, "Owner", u.owner)
        w.leaf("StorageClass", u.storage_class)
        w.leaf("Initiated", timestamp(u.initiated))
        w.end()
    _common_prefixes(w, result.common_prefixes, enc)
    return w.finish()
