"""HTTP semantics as S3 applies them: ranges, conditional requests, dates, stored headers.

Pure functions over header values; nothing here knows aiohttp. Every failure is an
:class:`~stratum.s3.errors.S3Error` carrying the elements and headers AWS puts in the
response, so handlers only have to raise what these functions raise.

Where AWS's behaviour is not written down, the choice made here is stated next to the
code that makes it. In short:

* ``Range``: only ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` with ASCII digits and no
  whitespace are honoured; any other value (other unit, ``a > b``, several ranges, junk) is
  ignored and the whole object is served with 200, as AWS does. ``bytes=-0`` is
  unsatisfiable; a suffix range on an empty object serves the (empty) whole object.
* Conditional reads follow RFC 7232 section 6: ``If-Match`` is evaluated instead of
  ``If-Unmodified-Since`` and ``If-None-Match`` instead of ``If-Modified-Since``; the
  412 conditions are evaluated before the 304 ones.
* Headers with an empty value are treated as absent; repeated headers are joined with
  ``,`` as RFC 9110 section 5.3 allows for list-valued fields.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from stratum.s3.errors import S3Error

# AWS: "the user-defined metadata is limited to 2 KB in size", measured as the sum of
# the UTF-8 lengths of every key and value (keys without the x-amz-meta- prefix).
USER_METADATA_LIMIT = 2048
USER_METADATA_PREFIX = "x-amz-meta-"

# Query parameter -> response header, for GetObject/HeadObject response overrides.
RESPONSE_OVERRIDES: dict[str, str] = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}

# Request header (lower case) -> the name under which the object stores and returns it.
STORED_STANDARD_HEADERS: dict[str, str] = {
    "cache-control": "Cache-Control",
    "content-disposition": "Content-Disposition",
    "content-encoding": "Content-Encoding",
    "content-language": "Content-Language",
    "expires": "Expires",
    "x-amz-website-redirect-location": "x-amz-website-redirect-location",
}

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {name.lower(): i + 1 for i, name in enumerate(_MONTHS)}

# [0-9] rather than \d: \d also matches non-ASCII digits, which int() would accept.
_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
# Offsets beyond any object size behave alike; longer digit strings are not converted
# (int() refuses more than 4300 digits, and a header may hold 8 KB of them).
_MAX_OFFSET_DIGITS = 30
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_IMF_RE = re.compile(
    r"(?i)([a-z]{3}), ([0-9]{1,2}) ([a-z]{3}) ([0-9]{4}) " + _TIME + r" GMT",
)
_RFC850_RE = re.compile(
    r"(?i)([a-z]{6,9}), ([0-9]{1,2})-([a-z]{3})-([0-9]{2}|[0-9]{4}) " + _TIME + r" GMT",
)
_ASCTIME_RE = re.compile(
    r"(?i)([a-z]{3}) ([a-z]{3}) {1,2}([0-9]{1,2}) " + _TIME + r" ([0-9]{4})",
)
_DAY_NAMES = {d.lower() for d in _DAYS}
_LONG_DAY_NAMES = {d.lower() for d in _LONG_DAYS}


# --------------------------------------------------------------------------- ranges


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte range a GetObject/HeadObject ``Range`` header asks for, as S3 serves it.

    Returns ``(start, end_exclusive)`` with ``0 <= start < end_exclusive <= size`` for a
    206 response, or None when the whole object is to be served with 200: no header, or
    one S3 ignores (another unit, invalid syntax, ``a > b``, several ranges). Raises
    ``InvalidRange`` (416) when the range starts at or past the end of the object; the
    error carries ``Content-Range: bytes */size``.
    """
    if header is None:
        return None
    match = _RANGE_RE.fullmatch(header)
    if match is None:
        return None  # other unit, multiple ranges, whitespace, junk: AWS ignores it
    first, last = match.group(1), match.group(2)
    if first == "" and last == "":
        return None  # "bytes=-" names no range at all
    if first == "":
        suffix = _offset(last)
        if suffix == 0:
            raise _invalid_range(header, size)
        if size == 0:
            # A suffix longer than the object means "the whole object" (RFC 7233); for an
            # empty object that is an empty 200 rather than a 206 with no valid
            # Content-Range. AWS serves empty objects to tail readers this way.
            return None
        return max(0, size - suffix), size
    start = _offset(first)
    if last != "":
        end = _offset(last)
        if end < start:
            return None  # syntactically invalid per RFC 7233: ignored, as AWS does
    else:
        end = size - 1
    if start >= size:
        raise _invalid_range(header, size)
    return start, min(end, size - 1) + 1


def _offset(digits: str) -> int:
    """A range offset; absurdly long ones saturate rather than hit int()'s digit limit."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_OFFSET_DIGITS else 10**_MAX_OFFSET_DIGITS


def _invalid_range(header: str, size: int) -> S3Error:
    return S3Error(
        "InvalidRange",
        extra={"RangeRequested": header, "ActualObjectSize": str(size)},
        headers={"Content-Range": f"bytes */{size}"},
    )


def content_range(start: int, end_excl: int, size: int) -> str:
    """The ``Content-Range`` value of a 206 response serving ``[start, end_excl)``."""
    return f"bytes {start}-{end_excl - 1}/{size}"


# --------------------------------------------------------------------------- dates


def http_date(ts: float) -> str:
    """IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), truncated to the second."""
    t = time.gmtime(math.floor(ts))
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def iso8601(ts: float) -> str:
    """The XML timestamp form, ``2006-02-27T12:00:00.000Z``, truncated to the millisecond."""
    # Round to microseconds first so that 1.001 (stored as 1.00099999...) stays 1.001.
    seconds, micros = divmod(round(ts * 1_000_000), 1_000_000)
    t = time.gmtime(seconds)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{micros // 1000:03d}Z"
    )


def parse_http_date(s: str, *, now: float | None = None) -> float | None:
    """Seconds since the epoch of an RFC 7231 HTTP-date, or None if ``s`` is not one.

    Accepts IMF-fixdate, RFC 850 and asctime. Month and day names are matched
    case-insensitively; the day name is not checked against the date. A two-digit RFC 850
    year more than 50 years after ``now`` is taken from the previous century (RFC 7231
    section 7.1.1.1); without ``now`` years 70-99 are 19xx and 00-69 are 20xx.
    """
    s = s.strip()
    if m := _IMF_RE.fullmatch(s):
        if m.group(1).lower() not in _DAY_NAMES:
            return None
        day, month, year = m.group(2), m.group(3), int(m.group(4))
        clock = m.group(5, 6, 7)
    elif m := _RFC850_RE.fullmatch(s):
        if m.group(1).lower() not in _LONG_DAY_NAMES:
            return None
        day, month = m.group(2), m.group(3)
        year = _full_year(m.group(4), now)
        clock = m.group(5, 6, 7)
    elif m := _ASCTIME_RE.fullmatch(s):
        if m.group(1).lower() not in _DAY_NAMES:
            return None
        month, day, year = m.group(2), m.group(3), int(m.group(7))
        clock = m.group(4, 5, 6)
    else:
        return None
    month_number = _MONTH_NUMBER.get(month.lower())
    if month_number is None:
        return None
    try:
        dt = datetime(
            year, month_number, int(day), int(clock[0]), int(clock[1]), int(clock[2]), tzinfo=UTC
        )
    except ValueError:
        return None  # 30 February, hour 24, leap second, year 0 ...
    return dt.timestamp()


def _full_year(digits: str, now: float | None) -> int:
    if len(digits) == 4:
        return int(digits)
    two = int(digits)
    if now is None:
        return 1900 + two if two >= 70 else 2000 + two
    current = time.gmtime(math.floor(now)).tm_year
    year = current - current % 100 + two
    return year - 100 if year > current + 50 else year


# --------------------------------------------------------------------------- conditions


def evaluate_read_conditions(
    headers: Mapping[str, str], etag: str, last_modified: float, now: float
) -> None:
    """Apply ``If-Match``, ``If-None-Match``, ``If-Modified-Since``, ``If-Unmodified-Since``.

    For GetObject/HeadObject of an existing object. Raises ``PreconditionFailed`` (412) or
    ``NotModified`` (304, carrying ``ETag`` and ``Last-Modified`` headers); returns None
    when the object is to be served. Precedence is RFC 7232 section 6, which gives AWS's
    documented pairs: If-Match true + If-Unmodified-Since false -> 200, If-None-Match
    false + If-Modified-Since true -> 304.
    """
    folded = _fold(headers)
    modified = math.floor(last_modified)
    if_match = _etag_list(folded, "if-match")
    if if_match is not None:
        if not _etag_matches(if_match, etag):
            raise _precondition_failed("If-Match")
    else:
        unmodified_since = _date(folded, "if-unmodified-since", now)
        if unmodified_since is not None and modified > unmodified_since:
            raise _precondition_failed("If-Unmodified-Since")
    if_none_match = _etag_list(folded, "if-none-match")
    if if_none_match is not None:
        if _etag_matches(if_none_match, etag):
            raise _not_modified(etag, last_modified)
    else:
        modified_since = _date(folded, "if-modified-since", now)
        if modified_since is not None and modified_since <= now and modified <= modified_since:
            raise _not_modified(etag, last_modified)


def evaluate_copy_source_conditions(
    headers: Mapping[str, str], etag: str, last_modified: float, now: float
) -> None:
    """The ``x-amz-copy-source-if-*`` conditions of CopyObject/UploadPartCopy.

    Same precedence as :func:`evaluate_read_conditions`, but every failure is 412
    ``PreconditionFailed`` (AWS: copy-source-if-none-match false + copy-source-if-modified-
    since true -> 412; copy-source-if-match true + copy-source-if-unmodified-since false ->
    the copy proceeds). A future ``if-modified-since`` date is ignored as for reads.
    """
    folded = _fold(headers)
    modified = math.floor(last_modified)
    prefix = "x-amz-copy-source-"
    if_match = _etag_list(folded, prefix + "if-match")
    if if_match is not None:
        if not _etag_matches(if_match, etag):
            raise _precondition_failed(prefix + "If-Match")
    else:
        unmodified_since = _date(folded, prefix + "if-unmodified-since", now)
        if unmodified_since is not None and modified > unmodified_since:
            raise _precondition_failed(prefix + "If-Unmodified-Since")
    if_none_match = _etag_list(folded, prefix + "if-none-match")
    if if_none_match is not None:
        if _etag_matches(if_none_match, etag):
            raise _precondition_failed(prefix + "If-None-Match")
    else:
        modified_since = _date(folded, prefix + "if-modified-since", now)
        if modified_since is not None and modified_since <= now and modified <= modified_since:
            raise _precondition_failed(prefix + "If-Modified-Since")


def evaluate_write_conditions(headers: Mapping[str, str], current_etag: str | None) -> None:
    """Conditional writes (PutObject, CompleteMultipartUpload, CopyObject destination).

    ``current_etag`` is None when no object exists under the key. ``If-None-Match: *``
    against an existing object -> 412, as is ``If-None-Match: "<etag>"`` naming the current
    object's ETag (another ETag, or no object: the write goes ahead); ``If-Match`` against a
    missing object -> 404 ``NoSuchKey``, against another ETag -> 412. AWS takes not both
    headers together: both -> 501 ``NotImplemented``.
    """
    folded = _fold(headers)
    if_none_match = _etag_list(folded, "if-none-match")
    if_match = _etag_list(folded, "if-match")
    if if_none_match is not None:
        if if_match is not None:
            raise S3Error("NotImplemented", extra={"Header": "If-Match"})
        if current_etag is not None and _etag_matches(if_none_match, current_etag):
            raise _precondition_failed("If-None-Match")
    if if_match is not None:
        if current_etag is None:
            raise S3Error("NoSuchKey")
        if not _etag_matches(if_match, current_etag):
            raise _precondition_failed("If-Match")


def _precondition_failed(condition: str) -> S3Error:
    return S3Error("PreconditionFailed", extra={"Condition": condition})


def _not_modified(etag: str, last_modified: float) -> S3Error:
    # A 304 carries the validators a 200 would have carried (RFC 7232 section 4.1).
    return S3Error(
        "NotModified",
        headers={"ETag": f'"{_bare_etag(etag)}"', "Last-Modified": http_date(last_modified)},
    )


def _fold(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased names; a repeated header (multidicts yield each) joined with ``,``."""
    folded: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        folded[key] = f"{folded[key]},{value}" if key in folded else value
    return folded


def _value(folded: Mapping[str, str], name: str) -> str | None:
    """A header's stripped value, None if absent or empty (clients send empty headers)."""
    value = folded.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _etag_list(folded: Mapping[str, str], name: str) -> list[str] | None:
    value = _value(folded, name)
    if value is None:
        return None
    tags = [_bare_etag(t) for t in value.split(",") if t.strip()]
    return tags or None


def _bare_etag(tag: str) -> str:
    """An ETag without weak prefix or quotes: S3 ETags never contain either."""
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    return tag.strip('"')


def _etag_matches(candidates: Iterable[str], etag: str) -> bool:
    """True if any candidate is ``*`` (the object exists) or equals ``etag``."""
    current = _bare_etag(etag)
    return any(c == "*" or c == current for c in candidates)


def _date(folded: Mapping[str, str], name: str, now: float) -> float | None:
    value = _value(folded, name)
    return None if value is None else parse_http_date(value, now=now)


# --------------------------------------------------------------------------- stored headers


def response_overrides(query: Mapping[str, str]) -> dict[str, str]:
    """Response headers set by ``response-*`` query parameters of GetObject/HeadObject."""
    return {header: query[param] for param, header in RESPONSE_OVERRIDES.items() if param in query}


def extract_user_metadata(
    headers: Mapping[str, str], *, limit: int = USER_METADATA_LIMIT
) -> dict[str, str]:
    """``x-amz-meta-*`` headers as ``{lower-case name without prefix: value}``.

    Raises ``MetadataTooLarge`` when names plus values exceed ``limit`` bytes of UTF-8.
    A header named just ``x-amz-meta-`` carries no name and is dropped. Empty values are
    kept: AWS stores and returns them.
    """
    metadata: dict[str, str] = {}
    for name, value in _fold(headers).items():
        if name.startswith(USER_METADATA_PREFIX) and len(name) > len(USER_METADATA_PREFIX):
            metadata[name[len(USER_METADATA_PREFIX) :]] = value
    # surrogateescape: servers decode undecodable header bytes that way; count them as bytes.
    size = sum(
        len(k.encode("utf-8", "surrogateescape")) + len(v.encode("utf-8", "surrogateescape"))
        for k, v in metadata.items()
    )
    if size > limit:
        raise S3Error("MetadataTooLarge")
    return metadata


def stored_standard_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The standard headers an object stores at write time and returns on reads.

    ``aws-chunked`` is a transfer detail of SigV4 streaming uploads, not a property of the
    object, so it is removed from ``Content-Encoding`` (and the header dropped if nothing
    else remains). Headers with an empty value are not stored.
    """
    stored: dict[str, str] = {}
    for name, value in _fold(headers).items():
        canonical = STORED_STANDARD_HEADERS.get(name)
        if canonical is None:
            continue
        value = value.strip()
        if name == "content-encoding":
            value = _without_aws_chunked(value)
        if value:
            stored[canonical] = value
    return stored


def _without_aws_chunked(encoding: str) -> str:
    codings = [c.strip() for c in encoding.split(",")]
    if not any(c.lower() == "aws-chunked" for c in codings):
        return encoding
    return ",".join(c for c in codings if c and c.lower() != "aws-chunked")


# --------------------------------------------------------------------------- digests


def parse_content_md5(value: str) -> bytes:
    """The 16 bytes of a ``Content-MD5`` header; anything else is ``InvalidDigest``."""
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 16:
        raise S3Error("InvalidDigest", extra={"Content-MD5": value})
    return digest
