"""ListObjectVersions: ``versions`` and ``objects`` walked together, a page at a time.

A key with entries in ``versions`` (see :mod:`stratum.meta.versions`) lists them, newest
first; a key without (never versioned, or not written since its bucket's versioning was set)
lists its ``objects`` record as its null version. Both databases are walked with one cursor
each, merged in byte order of the keys (but for the long-key corner documented in
:mod:`stratum.meta.versions`), and a common prefix is jumped over at once, so a page costs
what it returns: a key with 100,000 versions pages through them, a page at a time, from the
version the marker names (its order is in its id).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from stratum.meta import catalog, versions
from stratum.meta.records import ObjectRecord, decode_objects
from stratum.meta.store import Tx

_SUFFIX = 1 + versions.ORDER_BYTES  # SEP + inverted order after a key part


@dataclass
class VersionPage:
    """One page: versions (record, is latest) and common prefixes, in S3's order."""

    entries: list[tuple[ObjectRecord, bool]] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    next_key_marker: str | None = None
    next_version_id_marker: str | None = None


@dataclass
class _Group:
    """One key in the merged walk: its UTF-8 bytes and key, and where its versions are."""

    raw: bytes
    key: str
    versioned: bool  # entries in ``versions``; else ``record`` is its one (null) version
    record: ObjectRecord | None = None


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _key_str(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _versioned_keys(tx: Tx, base: bytes, floor: bytes) -> Iterator[_Group]:
    """Keys with entries in ``versions``, from UTF-8 bytes ``floor`` on, in key-part order."""
    cur = tx.cursor("versions")
    stuffed = floor.replace(b"\x01", b"\x01\x02").replace(b"\x00", b"\x01\x01")
    seek = base + stuffed[: versions.LONG_PART]  # at or before every key part from the floor
    while cur.set_range(seek):
        dbkey = cur.key()
        if not dbkey.startswith(base):
            return
        part = dbkey[len(base) : -_SUFFIX]
        raw = versions.unstuff(part)
        if raw is None:  # a long key: its record knows it
            raw = _utf8(ObjectRecord.decode(cur.value()).key)
        if raw >= floor:
            yield _Group(raw, _key_str(raw), True)
        seek = base + part + b"\x01"


def _object_keys(tx: Tx, base: bytes, floor: bytes) -> Iterator[_Group]:
    """Keys of ``objects`` from UTF-8 bytes ``floor`` on, in byte order."""
    cur = tx.cursor("objects")
    if not cur.set_range(base + floor[: catalog.LONG_KEY]):
        return
    skip = len(base)
    for dbkey, value in cur:
        if not dbkey.startswith(base):
            return
        if len(dbkey) - skip < catalog.LONG_KEY:
            found: list[tuple[bytes, Any]] = [(dbkey[skip:], value)]
        else:
            found = [(_utf8(r.key), r) for r in decode_objects(value)]
        for raw, record in found:
            if raw >= floor:
                if not isinstance(record, ObjectRecord):
                    record = ObjectRecord.decode(record)
                yield _Group(raw, record.key, False, record)


def _merged(tx: Tx, bucket: str, floor: bytes) -> Iterator[_Group]:
    """Every key from UTF-8 bytes ``floor`` on, once: its ``versions`` entries if it has
    any (its ``objects`` record is then the current version's copy), else its object."""
    base = versions.bucket_base(bucket)
    vers = _versioned_keys(tx, base, floor)
    objs = _object_keys(tx, base, floor)
    v, o = next(vers, None), next(objs, None)
    while v is not None or o is not None:
        if v is not None and (o is None or v.raw <= o.raw):
            if o is not None and o.raw == v.raw:
                o = next(objs, None)
            yield v
            v = next(vers, None)
            continue
        assert o is not None
        # A long key sharing its first LONG_PART key-part bytes with others is met in hash
        # order among versions: ask before taking it for a key without versions.
        if len(o.raw) < versions.LONG_PART // 2 or not versions.has_versions(tx, bucket, o.key):
            yield o
        o = next(objs, None)


class _Pager:
    def __init__(self, tx: Tx, bucket: str, prefix: str, delimiter: str, max_keys: int) -> None:
        self.tx, self.bucket = tx, bucket
        self.prefix, self.delimiter = prefix, delimiter
        self.prefix_raw = _utf8(prefix)
        self.max_keys = max_keys
        self.page = VersionPage()
        self.count = 0
        self.last: tuple[str, str | None] | None = None
        self._seen_long_prefixes: set[str] = set()

    def _full(self) -> bool:
        """Called with one more item to show: a full page ends here, truncated."""
        if self.count < self.max_keys:
            return False
        self.page.is_truncated = True
        if self.last is not None:
            self.page.next_key_marker, self.page.next_version_id_marker = self.last
        return True

    def run(self, start: bytes | None, resume: tuple[str, bytes] | None) -> VersionPage:
        """Walk from UTF-8 bytes ``start``; ``resume``: (key, order) to continue after first."""
        if resume is not None and self._versions_after(*resume):
            return self.page
        while start is not None:
            restart = None
            for group in _merged(self.tx, self.bucket, start):
                if not group.raw.startswith(self.prefix_raw):
                    if group.raw[: versions.LONG_PART // 2] > self.prefix_raw:
                        return self.page
                    continue  # the long-key corner: keys in hash order, some past the prefix
                common = self._common_prefix(group.key)
                if common is not None:
                    if common in self._seen_long_prefixes:
                        continue
                    if self._full():
                        return self.page
                    self.page.common_prefixes.append(common)
                    self.count += 1
                    self.last = (common, None)
                    raw = _utf8(common)
                    if len(raw) >= versions.LONG_PART // 2:  # may reach into the corner
                        self._seen_long_prefixes.add(common)
                        continue
                    restart = catalog.past_prefix(raw)
                    if restart is None:
                        return self.page
                    break
                if group.versioned:
                    if self._versions_after(group.key, None):
                        return self.page
                else:
                    if self._full():
                        return self.page
                    assert group.record is not None
                    self._add(group.record, True)
            start = restart
        return self.page

    def _common_prefix(self, key: str) -> str | None:
        if not self.delimiter:
            return None
        cut = key.find(self.delimiter, len(self.prefix))
        return None if cut < 0 else key[: cut + len(self.delimiter)]

    def _add(self, record: ObjectRecord, latest: bool) -> None:
        self.page.entries.append((record, latest))
        self.count += 1
        self.last = (record.key, record.version_id)

    def _versions_after(self, key: str, after: bytes | None) -> bool:
        """List ``key``'s versions (after the version of order ``after``); True once full."""
        prefix = versions.group(self.bucket, key)
        cur = self.tx.cursor("versions")
        seek = prefix if after is None else prefix + versions.invert(after)
        if not cur.set_range(seek):
            return False
        first = True
        for dbkey, raw in cur:
            if not dbkey.startswith(prefix):
                break
            if after is not None and dbkey == seek:
                continue  # the marker's own version, listed on the page before
            record = ObjectRecord.decode(raw)
            if record.key != key:
                continue
            if self._full():
                return True
            latest = first and (after is None or self._is_newest(prefix, dbkey))
            self._add(record, latest)
            first = False
        return False

    def _is_newest(self, prefix: bytes, dbkey: bytes) -> bool:
        cur = self.tx.cursor("versions")
        return bool(cur.set_range(prefix)) and cur.key() == dbkey


def list_versions(
    tx: Tx,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "",
    key_marker: str = "",
    version_marker: str = "",
    max_keys: int = 1000,
) -> VersionPage:
    """A page of versions after (``key_marker``, ``version_marker``), rolled up at
    ``delimiter``. Without a version marker the page starts after every version of
    ``key_marker``; with one (a version id or ``null``), after that version of it.
    Raises :class:`~stratum.meta.versions.InvalidVersionId` for a malformed marker."""
    pager = _Pager(tx, bucket, prefix, delimiter, max_keys)
    if max_keys <= 0:
        return pager.page
    start = _utf8(prefix)
    resume: tuple[str, bytes] | None = None
    if key_marker:
        inside = key_marker.startswith(prefix)
        rolled = pager._common_prefix(key_marker) if inside else None
        if rolled is not None and len(_utf8(rolled)) < versions.LONG_PART // 2:
            # Resuming at or inside a common prefix: that prefix was returned already.
            past = catalog.past_prefix(_utf8(rolled))
            return pager.run(max(start, past), None) if past is not None else pager.page
        if inside and rolled is None and version_marker:
            order = versions.parse_version_id(version_marker)
            if order is None:
                order = versions.null_order(tx, bucket, key_marker)
            if order is not None and versions.has_versions(tx, bucket, key_marker):
                resume = (key_marker, order)
        start = max(start, _utf8(key_marker) + b"\x00")  # the smallest key after the marker
    return pager.run(start, resume)


def every_version(tx: Tx, bucket: str) -> Iterator[ObjectRecord]:
    """Every version of every key of the bucket, delete markers included (a whole walk)."""
    for found in _merged(tx, bucket, b""):
        if found.versioned:
            yield from versions.history(tx, bucket, found.key)
        elif found.record is not None:
            yield found.record
