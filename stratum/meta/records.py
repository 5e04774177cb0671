"""Versioned metadata records.

Every value stored in LMDB is one byte of record format version followed by a
compact JSON object::

    0x01 | {"...": ...}            format 1, one record
    0x81 | [{...}, {...}]          format 1, a list of object records sharing one LMDB key
                                   (keys longer than LMDB's key limit, see catalog.py)

Decoders for older versions stay beside the current one (none yet); a record of a
newer version than this code knows is refused rather than misread.

Records:

- :class:`BucketRecord` (``buckets``: bucket name -> record), with its versioning state
  (``""`` never versioned, ``Enabled``, ``Suspended``) and the Object Lock fields.
- :class:`ObjectRecord` (``objects``: bucket NUL key -> record): the S3 view of the key's
  current version when it is an object, and the id of the volume holding its bytes. A key
  never moves; tiering changes only where its volume lives. The same record describes every
  version in ``versions`` (see :mod:`stratum.meta.versions`), delete markers included
  (``delete_marker``, the volume then being the marker's zero-byte record on disk).
- :class:`VolumeRecord` (``volumes``: volume id -> record): tier, storage layout and
  location, size, checksums and the access signals the tier engine reads.
- :class:`UserRecord` (``users``: access key -> record).
- ``gc``: volume id -> VolumeRecord of a volume no key points at any more, to be freed.

Fields added later decode with their defaults from older records: an object record without
``version_id`` is the null version, without ``order`` it takes its order from its
``last_modified`` (:func:`stratum.meta.versions.order_of`); a bucket record without
``versioning`` was never versioned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, NamedTuple, TypeVar

RECORD_VERSION = 1
RECENT_READS = 16
SINGLE = bytes([RECORD_VERSION])
MULTI = bytes([0x80 | RECORD_VERSION])

R = TypeVar("R", bound="Record")


class RecordError(Exception):
    """A stored record could not be decoded."""


_decode_json = json.JSONDecoder().decode  # json.loads less its per-call checks: str in
# The C scanner under that decoder: one call, without the Python frames around it
# (raw_decode, the whitespace regexes), for every record a GET, HEAD or scrub reads.
_scan_json: Callable[[str, int], tuple[Any, int]]
_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _nested(value: Any) -> Any:
    """json's fallback for what is not JSON itself: a dataclass nested in a field (as
    ``asdict`` would render it); anything else is the TypeError json raises."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_nested).encode


def _dumps(value: Any) -> bytes:
    return _encode_json(value).encode()


@dataclass
class Record:
    """Base: JSON-able dataclass fields, unknown fields from newer minor writers ignored."""

    def encode(self) -> bytes:
        # The instance's own attribute dict, in field order: what asdict() would give for
        # JSON, without its deep copy of every value (most of a small PUT's commit encoding).
        return SINGLE + _dumps(self.__dict__)

    @classmethod
    def decode(cls: type[R], raw: bytes) -> R:
        if not raw or raw[0] != RECORD_VERSION:
            raise RecordError(f"{cls.__name__}: unsupported record format {raw[:1]!r}")
        return cls._adopt(_load_single(raw))

    @classmethod
    def _adopt(cls: type[R], data: Any) -> R:
        """:meth:`from_dict` for a dict that was just decoded and that nobody else holds.

        When its names are exactly the fields (every record this version wrote), the record
        takes the dict as its attribute dict: the same attributes ``__init__`` would set
        (the records have no ``__post_init__`` and convert nothing), without the call."""
        if type(data) is dict and data.keys() == cls.__dataclass_fields__.keys():
            record = object.__new__(cls)
            record.__dict__ = data
            return record
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        try:  # the common case, and on every key of a listing: no unknown fields
            return cls(**data)
        except TypeError:
            names = cls.__dataclass_fields__.keys()
            return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class BucketRecord(Record):
    name: str
    owner_id: str
    created: float
    region: str = "us-east-1"
    # tier pin for new and existing objects of this bucket ("" = automatic)
    pin: str = ""
    # "" (never versioned), "Enabled" or "Suspended": once set, never "" again
    versioning: str = ""
    # Object Lock: enabled at creation for good; the default retention applied to new
    # versions ({"mode": "GOVERNANCE" | "COMPLIANCE", "days": n} or {..., "years": n})
    object_lock: bool = False
    lock_default: dict[str, Any] = field(default_factory=dict)
    # where the newest on-disk record of this configuration is (a segment location and its
    # volume id, see stratum.service.versioning), so that the next change can free it
    config_record: dict[str, Any] = field(default_factory=dict)
    # the bucket's sub-resource configurations by name ("policy", "cors", "lifecycle",
    # "tagging", "acl", "public_access_block", "ownership", "replication", ...), each as its
    # owner module stores it (JSON-able); absent = not configured. Read with the record, so a
    # request needs no other metadata read to know them; written to disk with the record.
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectRecord(Record):
    key: str
    volume_id: str
    size: int
    etag: str  # quoted, as S3 returns it
    last_modified: float
    content_type: str = "binary/octet-stream"
    # x-amz-meta-* (names lower-cased, without the prefix) and the standard headers
    # S3 stores and returns (cache-control, content-disposition, ...)
    user_meta: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    storage_class: str = ""  # an explicit pin requested by the client ("" = automatic)
    checksums: dict[str, str] = field(default_factory=dict)
    parts: int = 0  # number of parts for multipart objects
    owner_id: str = ""
    upload_id: str = ""  # the multipart upload that made this object, if any
    # "null" for the null version (every object of a never-versioned bucket), else the
    # version id (stratum.meta.versions: the hex of ``order``)
    version_id: str = "null"
    # 32 hex: the version's place in its key's history (greatest = current); "" in records
    # written before versioning (then derived from last_modified)
    order: str = ""
    delete_marker: bool = False  # a delete marker (in ``versions`` only, never ``objects``)
    # Object Lock on this version: "" | "GOVERNANCE" | "COMPLIANCE", retain until (epoch
    # seconds, 0 = none), legal hold. Consulted by stratum.service.versioning.removal_refused.
    lock_mode: str = ""
    lock_until: float = 0.0
    legal_hold: bool = False
    # the version's tag set (x-amz-tagging, PutObjectTagging) and its access control list
    # (owner and grants, as stratum.s3 stores them; empty = the canned "private")
    tags: dict[str, str] = field(default_factory=dict)
    acl: dict[str, Any] = field(default_factory=dict)
    # where the newest on-disk record of a change to the fields above is, once the version
    # was changed after it was written (stratum.service.amend), so the next change frees it
    amend_record: dict[str, Any] = field(default_factory=dict)
    # x-amz-replication-status: "" (not replicated), PENDING, COMPLETED or FAILED on the
    # site that wrote it, REPLICA where another site's replication wrote it
    replication: str = ""


@dataclass
class VolumeRecord(Record):
    volume_id: str
    tier: str  # "hot" | "warm" | "cold"
    layout: str  # "seg" (replicated segment records) | "ec" (erasure-coded shard files)
    location: dict[str, Any]  # the storage layer's own location record
    size: int
    md5: str  # hex md5 of the whole volume
    created: float
    last_access: float = 0.0
    access_count: int = 0
    access_rate: float = 0.0  # exponentially decaying reads per day
    # multipart objects: the size of each part so partNumber reads can find them
    part_sizes: list[int] = field(default_factory=list)
    # the key the volume was written for (decision logs, explanations, recovery)
    bucket: str = ""
    key: str = ""
    # times of the most recent reads (at most RECENT_READS), for promotion rules
    recent: list[float] = field(default_factory=list)
    # the tier engine's last decision on this volume: rule, time, inputs
    placed: dict[str, Any] = field(default_factory=dict)
    # the order (32 hex) of the version whose bytes this is ("" for parts and older records)
    order: str = ""
    # "" for object data, "marker" for a delete marker's zero-byte record
    kind: str = ""
    # multipart objects uploaded with a checksum: each part's value of it, in part order
    # (GetObjectAttributes' parts, GET and HEAD with partNumber)
    part_checksums: list[str] = field(default_factory=list)


@dataclass
class UserRecord(Record):
    """A user other than root. Its secret is sealed (``sealed_secret``, format and key in
    :mod:`stratum.service.user_secrets`); ``secret_key`` holds it in plaintext only in a
    record written before secrets were sealed ("" once sealed, which every start does).
    ``canonical_id`` is the owner id of its buckets: random for users added since ids stopped
    being derived from the access key, the SHA-256 of ``stratum-user:<access key>`` before."""

    access_key: str
    secret_key: str
    canonical_id: str
    display_name: str
    created: float
    sealed_secret: str = ""


def _load_single(raw: bytes) -> Any:
    """The JSON of a format-1 single record. The format byte 0x01 decodes as one character,
    so the scanner starts at index 1 of the whole value (no slice of the bytes); anything
    the scanner does not take whole (leading or trailing whitespace, an error) goes
    through the full decoder, which accepts or refuses it exactly as before."""
    text = raw.decode()
    try:
        value, end = _scan_json(text, 1)
    except StopIteration:
        end = -1
    if end != len(text):
        return _decode_json(text[1:])
    return value


class ListedObject(NamedTuple):
    """What a listing shows of an object record (see :func:`decode_listed`)."""

    key: str
    last_modified: float
    etag: str
    size: int
    storage_class: str

    @classmethod
    def of(cls, record: ObjectRecord) -> ListedObject:
        return cls(record.key, record.last_modified, record.etag, record.size, record.storage_class)


# The head of an object record as this version writes it: fields in declaration order,
# compact separators. A string without a backslash is its own value (a control character
# would be escaped); the usual ETag is a quoted one, \"...\". A record that looks any
# other way (escapes, another layout, an exponent or an int time) is decoded in full.
_STRING = r'[^"\\\x00-\x1f]*'
_LISTED_HEAD = re.compile(
    rf'\x01\{{"key":"({_STRING})","volume_id":"{_STRING}","size":([0-9]+),'
    rf'"etag":"(\\"{_STRING}\\"|{_STRING})","last_modified":([0-9]+\.[0-9]+),'
)
_STORAGE_CLASS = re.compile(rf'"storage_class":"({_STRING})"')
_STORAGE_CLASS_NAME = '"storage_class":'
_make_tuple = tuple.__new__


def decode_listed(raw: bytes) -> ListedObject:
    """The fields a listing shows of a single ``objects`` record, without decoding the rest.

    A LIST request's cost is mostly this, once per key: a regular expression over the head
    of the record takes about half the time of the JSON decoder building all thirteen
    fields and their dicts. ``storage_class`` comes after the user metadata and headers,
    whose names are the client's, so its name must occur exactly once: a ``"`` inside a
    JSON string is always escaped, so any other occurrence is such a dict's key. A record
    the fast path does not take is decoded in full; one it takes gives what the full
    decode would (tests/unit/test_records_listed.py checks both on arbitrary records)."""
    text = raw.decode()
    head = _LISTED_HEAD.match(text)
    if head is not None and text.count(_STORAGE_CLASS_NAME) == 1:
        storage_class = _STORAGE_CLASS.search(text, head.end())
        if storage_class is not None:
            key, size, etag, last_modified = head.groups()
            if etag[:1] == "\\":
                etag = f'"{etag[2:-2]}"'
            fields = (key, float(last_modified), etag, int(size), storage_class[1])
            return _make_tuple(ListedObject, fields)  # ListedObject(*fields) less a call
    return ListedObject.of(ObjectRecord.decode(raw))


def encode_object_list(records: list[ObjectRecord]) -> bytes:
    return MULTI + _dumps([r.__dict__ for r in records])


def decode_objects(raw: bytes) -> list[ObjectRecord]:
    """Decode an ``objects`` value: one record or a list sharing a long-key LMDB key."""
    if raw and raw[0] == RECORD_VERSION:
        return [ObjectRecord._adopt(_load_single(raw))]
    if raw and raw[0] == MULTI[0]:
        return [ObjectRecord._adopt(d) for d in json.loads(raw[1:])]
    raise RecordError(f"objects: unsupported record format {raw[:1]!r}")


@dataclass
class UploadRecord(Record):
    """A multipart upload in progress (``uploads``: bucket NUL upload id -> record)."""

    upload_id: str
    bucket: str
    key: str
    owner_id: str
    initiated: float
    content_type: str = "binary/octet-stream"
    user_meta: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    storage_class: str = ""
    checksum_algorithm: str = ""  # "" or crc32 / crc32c / crc64nvme / sha1 / sha256
    checksum_type: str = ""  # "" / COMPOSITE / FULL_OBJECT
    tags: dict[str, str] = field(default_factory=dict)  # the completed object's (x-amz-tagging)
    # the object's access control list once completed (stratum.access.acl; {} = private)
    acl: dict[str, Any] = field(default_factory=dict)
    # Object Lock fields asked for at creation (tags and ACL: above), given at completion
    amendable: dict[str, Any] = field(default_factory=dict)


@dataclass
class PartRecord(Record):
    """One uploaded part (``parts``: upload id + part number, 4 bytes big-endian -> record).

    The part's bytes are an ordinary volume (``volumes``) until the upload completes,
    when the object's volume absorbs the part volumes without copying their data.
    """

    part_number: int
    volume_id: str
    size: int
    etag: str  # quoted
    last_modified: float
    checksums: dict[str, str] = field(default_factory=dict)
