"""HTTP semantics as S3 applies them: every rule of stratum.s3.httpsem, table by table."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from stratum.s3.errors import S3Error
from stratum.s3.httpsem import (
    content_range,
    evaluate_copy_source_conditions,
    evaluate_read_conditions,
    evaluate_write_conditions,
    extract_user_metadata,
    http_date,
    iso8601,
    parse_content_md5,
    parse_http_date,
    parse_range,
    response_overrides,
    stored_standard_headers,
)

# Sun, 06 Nov 1994 08:49:37 GMT, the RFC 7231 example date.
T = 784111777
IMF = "Sun, 06 Nov 1994 08:49:37 GMT"
BEFORE = "Sun, 06 Nov 1994 08:49:36 GMT"
AFTER = "Sun, 06 Nov 1994 08:49:38 GMT"
NOW = T + 3600.0
FUTURE = http_date(NOW + 60)
ETAG = '"9b2cf535f27731c974343645a3985328"'
BARE = "9b2cf535f27731c974343645a3985328"
OTHER = '"00000000000000000000000000000000"'

# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-0", 10, (0, 1)),
        ("bytes=0-9", 10, (0, 10)),
        ("bytes=2-5", 10, (2, 6)),
        ("bytes=5-15", 10, (5, 10)),  # end clamped to size - 1
        ("bytes=9-9", 10, (9, 10)),
        ("bytes=3-", 10, (3, 10)),
        ("bytes=0-", 10, (0, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-10", 10, (0, 10)),
        ("bytes=-150", 100, (0, 100)),  # longer suffix: whole object, still 206
        ("bytes=007-008", 10, (7, 9)),
        ("bytes=0-99999999999999999999999", 10, (0, 10)),
        ("bytes=0-" + "9" * 5000, 10, (0, 10)),  # beyond int()'s 4300-digit limit
        ("bytes=-" + "9" * 5000, 10, (0, 10)),
        ("bytes=" + "0" * 5000 + "2-3", 10, (2, 4)),
        # Ignored headers: the whole object with 200.
        ("", 10, None),
        ("bytes=", 10, None),
        ("bytes=-", 10, None),
        ("bytes=5-2", 10, None),  # last < first: invalid, ignored
        ("bytes=33-10", 10, None),
        ("bytes=0-1,3-4", 10, None),  # AWS serves no multipart/byteranges
        ("bytes=0-1,", 10, None),
        ("items=0-1", 10, None),
        ("Bytes=0-1", 10, None),
        ("bytes = 0-1", 10, None),
        ("bytes= 0-1", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=invalid-range", 10, None),
        ("bytes=+1-2", 10, None),
        ("bytes=1--2", 10, None),
        ("bytes=٣-٤", 10, None),  # non-ASCII digits
        ("invalid", 10, None),
        ("bytes=0-1 ", 10, None),
        # Empty object: a suffix asks for "the whole thing", which is nothing.
        ("bytes=-1", 0, None),
        ("bytes=-5", 0, None),
        ("bytes=5-2", 0, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=10-", 10),
        ("bytes=10-20", 10),
        ("bytes=40-50", 7),
        ("bytes=8888-9999", 10),
        ("bytes=99999999999999999999999-", 10),
        ("bytes=" + "9" * 5000 + "-", 10),
        ("bytes=-0", 10),
        ("bytes=-0", 0),
        ("bytes=0-0", 0),
        ("bytes=0-", 0),
        ("bytes=1-2", 0),
    ],
)
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(S3Error) as info:
        parse_range(header, size)
    err = info.value
    assert err.code == "InvalidRange"
    assert err.status == 416
    assert err.extra == {"RangeRequested": header, "ActualObjectSize": str(size)}
    assert err.headers == {"Content-Range": f"bytes */{size}"}


@pytest.mark.parametrize(
    ("start", "end", "size", "expected"),
    [(0, 10, 10, "bytes 0-9/10"), (5, 6, 443, "bytes 5-5/443"), (0, 1, 1, "bytes 0-0/1")],
)
def test_content_range(start: int, end: int, size: int, expected: str) -> None:
    assert content_range(start, end, size) == expected


def _object(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 600), st.integers(0, 800), st.integers(0, 800))
def test_first_last_range_is_python_slice(size: int, a: int, b: int) -> None:
    """``bytes=a-b`` serves ``data[a:b+1]``, 416 when a >= size, whole object when a > b."""
    data = _object(size)
    header = f"bytes={a}-{b}"
    if a > b:
        assert parse_range(header, size) is None
        return
    if a >= size:
        with pytest.raises(S3Error) as info:
            parse_range(header, size)
        assert info.value.code == "InvalidRange"
        return
    result = parse_range(header, size)
    assert result is not None
    start, end = result
    assert 0 <= start < end <= size
    assert data[start:end] == data[a : b + 1]
    assert content_range(start, end, size) == f"bytes {a}-{min(b, size - 1)}/{size}"


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 600), st.integers(0, 800))
def test_open_range_is_python_slice(size: int, a: int) -> None:
    data = _object(size)
    if a >= size:
        with pytest.raises(S3Error):
            parse_range(f"bytes={a}-", size)
        return
    result = parse_range(f"bytes={a}-", size)
    assert result is not None
    start, end = result
    assert 0 <= start < end <= size
    assert data[start:end] == data[a:]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 600), st.integers(1, 800))
def test_suffix_range_is_python_slice(size: int, n: int) -> None:
    data = _object(size)
    result = parse_range(f"bytes=-{n}", size)
    if size == 0:
        assert result is None
        return
    assert result is not None
    start, end = result
    assert 0 <= start < end == size
    assert data[start:end] == data[-n:]


_RANGE_ALPHABET = st.sampled_from(list("0123456789-,= bytesBYTES\t+x٣"))


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(_RANGE_ALPHABET, max_size=20),
        st.text(_RANGE_ALPHABET, max_size=20).map(lambda t: "bytes=" + t),
    ),
    st.integers(0, 10**6),
)
def test_parse_range_raises_only_s3_error(header: str, size: int) -> None:
    try:
        result = parse_range(header, size)
    except S3Error as err:
        assert err.code == "InvalidRange"
        return
    if result is not None:
        start, end = result
        assert 0 <= start < end <= size


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (T, IMF),
        (T + 0.999, IMF),
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (951782400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (1141041600, "Mon, 27 Feb 2006 12:00:00 GMT"),
    ],
)
def test_http_date(ts: float, expected: str) -> None:
    assert http_date(ts) == expected


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (1141041600, "2006-02-27T12:00:00.000Z"),
        (1141041600.5, "2006-02-27T12:00:00.500Z"),
        (1.001, "1970-01-01T00:00:01.001Z"),
        (T + 0.9999, "1994-11-06T08:49:37.999Z"),  # truncated, never rounded up
        (0, "1970-01-01T00:00:00.000Z"),
    ],
)
def test_iso8601(ts: float, expected: str) -> None:
    assert iso8601(ts) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (IMF, T),
        ("  " + IMF + " ", T),
        ("Sun, 6 Nov 1994 08:49:37 GMT", T),
        ("sun, 06 nov 1994 08:49:37 gmt", T),
        ("Sunday, 06-Nov-94 08:49:37 GMT", T),
        ("Sunday, 06-Nov-1994 08:49:37 GMT", T),
        ("Sun Nov  6 08:49:37 1994", T),
        ("Sun Nov 6 08:49:37 1994", T),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
        ("Tue, 29 Feb 2000 00:00:00 GMT", 951782400),
        # Not HTTP-dates: ignored by the callers.
        ("", None),
        ("yesterday", None),
        ("1994-11-06T08:49:37Z", None),
        ("784111777", None),
        ("Sun, 06 Nov 1994 08:49:37 +0000", None),
        ("Sun, 06 Nov 1994 08:49:37 UTC", None),
        ("Sun, 06 Nov 1994 08:49:37", None),
        ("Xyz, 06 Nov 1994 08:49:37 GMT", None),
        ("Sun, 06 Foo 1994 08:49:37 GMT", None),
        ("Sun, 30 Feb 1994 08:49:37 GMT", None),
        ("Sun, 06 Nov 1994 24:00:00 GMT", None),
        ("Sun, 06 Nov 1994 08:60:00 GMT", None),
        ("Sun, 06 Nov 1994 08:49:60 GMT", None),
        ("Sun, 06 Nov 0000 08:49:37 GMT", None),
        ("Sun, 06 Nov 1994 08:49:37 GMT x", None),
        ("Sun, 06 Nov 1994 8:49:37 GMT", None),
        ("Sun, 06-Nov-94 08:49:37 GMT", None),  # RFC 850 needs the long day name
        ("Sunday, 06 Nov 1994 08:49:37 GMT", None),
    ],
)
def test_parse_http_date(text: str, expected: float | None) -> None:
    assert parse_http_date(text) == expected


@pytest.mark.parametrize(
    ("text", "now_year", "year"),
    [
        ("Thursday, 01-Jan-70 00:00:00 GMT", None, 1970),
        ("Saturday, 01-Jan-00 00:00:00 GMT", None, 2000),
        ("Friday, 01-Jan-69 00:00:00 GMT", None, 2069),
        # RFC 7231: more than 50 years ahead of now means the previous century.
        ("Friday, 01-Jan-71 00:00:00 GMT", 2020, 2071 - 100),
        ("Friday, 01-Jan-70 00:00:00 GMT", 2020, 2070),
        ("Friday, 01-Jan-25 00:00:00 GMT", 2020, 2025),
        ("Friday, 01-Jan-99 00:00:00 GMT", 2060, 2099),
    ],
)
def test_rfc850_two_digit_year(text: str, now_year: int | None, year: int) -> None:
    now = None if now_year is None else datetime(now_year, 6, 1, tzinfo=UTC).timestamp()
    parsed = parse_http_date(text, now=now)
    assert parsed is not None
    assert datetime.fromtimestamp(parsed, UTC).year == year


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 253402300799))
def test_http_date_round_trips(ts: int) -> None:
    assert parse_http_date(http_date(ts)) == ts


# --------------------------------------------------------------------------- read conditions


def _read(headers: dict[str, str], etag: str = ETAG, last_modified: float = T + 0.75) -> str:
    """200, 304 or 412 as the server would answer."""
    try:
        evaluate_read_conditions(headers, etag, last_modified, NOW)
    except S3Error as err:
        return str(err.status)
    return "200"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "200"),
        # If-Match
        ({"If-Match": ETAG}, "200"),
        ({"If-Match": BARE}, "200"),
        ({"If-Match": "W/" + ETAG}, "200"),
        ({"If-Match": "*"}, "200"),
        ({"If-Match": f"{OTHER}, {ETAG}"}, "200"),
        ({"If-Match": f"{OTHER},{BARE}"}, "200"),
        ({"If-Match": OTHER}, "412"),
        ({"If-Match": '""'}, "412"),
        ({"If-Match": ""}, "200"),  # an empty header is no condition
        ({"if-match": OTHER}, "412"),  # names are case-insensitive
        ({"IF-MATCH": ETAG}, "200"),
        # If-None-Match
        ({"If-None-Match": ETAG}, "304"),
        ({"If-None-Match": BARE}, "304"),
        ({"If-None-Match": "W/" + ETAG}, "304"),
        ({"If-None-Match": "*"}, "304"),
        ({"If-None-Match": f"{OTHER}, {ETAG}"}, "304"),
        ({"If-None-Match": OTHER}, "200"),
        # If-Modified-Since (second granularity: T + 0.75 is "T")
        ({"If-Modified-Since": IMF}, "304"),
        ({"If-Modified-Since": AFTER}, "304"),
        ({"If-Modified-Since": BEFORE}, "200"),
        ({"If-Modified-Since": FUTURE}, "200"),  # a future date is ignored
        ({"If-Modified-Since": "not a date"}, "200"),
        ({"If-Modified-Since": "Sunday, 06-Nov-94 08:49:37 GMT"}, "304"),
        ({"If-Modified-Since": "Sun Nov  6 08:49:37 1994"}, "304"),
        # If-Unmodified-Since
        ({"If-Unmodified-Since": IMF}, "200"),
        ({"If-Unmodified-Since": AFTER}, "200"),
        ({"If-Unmodified-Since": FUTURE}, "200"),
        ({"If-Unmodified-Since": BEFORE}, "412"),
        ({"If-Unmodified-Since": "garbage"}, "200"),
        # AWS's documented pairs.
        ({"If-Match": ETAG, "If-Unmodified-Since": BEFORE}, "200"),
        ({"If-None-Match": ETAG, "If-Modified-Since": BEFORE}, "304"),
        # The rest of RFC 7232 section 6.
        ({"If-Match": OTHER, "If-Unmodified-Since": AFTER}, "412"),
        ({"If-None-Match": OTHER, "If-Modified-Since": IMF}, "200"),
        ({"If-Match": OTHER, "If-None-Match": ETAG}, "412"),  # 412 before 304
        ({"If-Unmodified-Since": BEFORE, "If-None-Match": ETAG}, "412"),
        ({"If-Unmodified-Since": BEFORE, "If-Modified-Since": IMF}, "412"),
        ({"If-Match": ETAG, "If-None-Match": ETAG}, "304"),
        ({"If-Match": ETAG, "If-Modified-Since": IMF}, "304"),
        ({"If-Match": ETAG, "If-Modified-Since": BEFORE}, "200"),
        ({"If-None-Match": OTHER, "If-Unmodified-Since": BEFORE}, "412"),
        ({"If-Unmodified-Since": AFTER, "If-Modified-Since": BEFORE}, "200"),
        ({"If-Match": "", "If-Unmodified-Since": BEFORE}, "412"),
        ({"If-None-Match": " ", "If-Modified-Since": IMF}, "304"),
    ],
)
def test_read_conditions(headers: dict[str, str], expected: str) -> None:
    assert _read(headers) == expected


@pytest.mark.parametrize("etag", [ETAG, BARE])
def test_read_conditions_accept_quoted_or_bare_stored_etag(etag: str) -> None:
    assert _read({"If-Match": ETAG}, etag=etag) == "200"
    assert _read({"If-None-Match": BARE}, etag=etag) == "304"


def test_read_conditions_multipart_etag() -> None:
    etag = '"d41d8cd98f00b204e9800998ecf8427e-3"'
    assert _read({"If-Match": "d41d8cd98f00b204e9800998ecf8427e-3"}, etag=etag) == "200"
    assert _read({"If-Match": "d41d8cd98f00b204e9800998ecf8427e"}, etag=etag) == "412"


def test_repeated_headers_are_a_list() -> None:
    """aiohttp hands over a multidict; a repeated header counts as one comma list."""
    headers = CIMultiDictProxy(CIMultiDict([("If-None-Match", OTHER), ("if-none-match", ETAG)]))
    with pytest.raises(S3Error) as info:
        evaluate_read_conditions(headers, ETAG, T, NOW)
    assert info.value.code == "NotModified"
    meta = CIMultiDict([("x-amz-meta-a", "1"), ("X-Amz-Meta-A", "2"), ("x-amz-meta-b", "3")])
    assert extract_user_metadata(meta) == {"a": "1,2", "b": "3"}


def test_not_modified_carries_validators() -> None:
    with pytest.raises(S3Error) as info:
        evaluate_read_conditions({"If-None-Match": BARE}, BARE, T + 0.5, NOW)
    assert info.value.code == "NotModified"
    assert info.value.headers == {"ETag": ETAG, "Last-Modified": IMF}


def test_precondition_failed_names_the_condition() -> None:
    with pytest.raises(S3Error) as info:
        evaluate_read_conditions({"If-Match": OTHER}, ETAG, T, NOW)
    assert info.value.code == "PreconditionFailed"
    assert info.value.extra == {"Condition": "If-Match"}
    with pytest.raises(S3Error) as info:
        evaluate_read_conditions({"If-Unmodified-Since": BEFORE}, ETAG, T, NOW)
    assert info.value.extra == {"Condition": "If-Unmodified-Since"}


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 2 * 10**9),
    st.floats(0, 0.999),
    st.integers(-5, 5),
)
def test_modified_since_compares_whole_seconds(base: int, frac: float, delta: int) -> None:
    date = base + delta
    headers = {"If-Modified-Since": http_date(date)}
    try:
        evaluate_read_conditions(headers, ETAG, base + frac, float(2 * 10**9 + 10))
    except S3Error as err:
        assert err.code == "NotModified"
        assert base <= date
    else:
        assert base > date


# --------------------------------------------------------------------------- copy source

CS = "x-amz-copy-source-"


def _copy(headers: dict[str, str], last_modified: float = T + 0.75) -> str:
    try:
        evaluate_copy_source_conditions(headers, ETAG, last_modified, NOW)
    except S3Error as err:
        assert err.code == "PreconditionFailed"
        return str(err.status)
    return "200"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "200"),
        ({CS + "if-match": ETAG}, "200"),
        ({CS + "if-match": BARE}, "200"),
        ({CS + "if-match": "*"}, "200"),
        ({CS + "if-match": OTHER}, "412"),
        ({CS + "if-none-match": OTHER}, "200"),
        ({CS + "if-none-match": ETAG}, "412"),
        ({CS + "if-none-match": "*"}, "412"),
        ({CS + "if-modified-since": BEFORE}, "200"),
        ({CS + "if-modified-since": IMF}, "412"),
        ({CS + "if-modified-since": FUTURE}, "200"),
        ({CS + "if-modified-since": "junk"}, "200"),
        ({CS + "if-unmodified-since": IMF}, "200"),
        ({CS + "if-unmodified-since": BEFORE}, "412"),
        ({CS + "if-unmodified-since": "junk"}, "200"),
        ({"X-Amz-Copy-Source-If-Match": OTHER}, "412"),
        # AWS's documented pairs.
        ({CS + "if-match": ETAG, CS + "if-unmodified-since": BEFORE}, "200"),
        ({CS + "if-none-match": ETAG, CS + "if-modified-since": BEFORE}, "412"),
        ({CS + "if-none-match": OTHER, CS + "if-modified-since": IMF}, "200"),
        ({CS + "if-match": OTHER, CS + "if-unmodified-since": AFTER}, "412"),
        # The plain conditions are about the destination, not the source.
        ({"If-Match": OTHER, "If-None-Match": ETAG}, "200"),
    ],
)
def test_copy_source_conditions(headers: dict[str, str], expected: str) -> None:
    assert _copy(headers) == expected


# --------------------------------------------------------------------------- write conditions


def _write(headers: dict[str, str], current: str | None) -> str:
    try:
        evaluate_write_conditions(headers, current)
    except S3Error as err:
        return err.code
    return "ok"


@pytest.mark.parametrize(
    ("headers", "current", "expected"),
    [
        ({}, None, "ok"),
        ({}, ETAG, "ok"),
        ({"If-None-Match": "*"}, None, "ok"),
        ({"If-None-Match": "*"}, ETAG, "PreconditionFailed"),
        ({"if-none-match": " * "}, ETAG, "PreconditionFailed"),
        ({"If-None-Match": ETAG}, ETAG, "PreconditionFailed"),
        ({"If-None-Match": BARE}, ETAG, "PreconditionFailed"),
        ({"If-None-Match": f"{OTHER}, {ETAG}"}, ETAG, "PreconditionFailed"),
        ({"If-None-Match": OTHER}, ETAG, "ok"),
        ({"If-None-Match": ETAG}, None, "ok"),
        ({"If-None-Match": ""}, ETAG, "ok"),
        ({"If-Match": ETAG}, ETAG, "ok"),
        ({"If-Match": BARE}, ETAG, "ok"),
        ({"If-Match": ETAG}, BARE, "ok"),
        ({"If-Match": f"{OTHER}, {ETAG}"}, ETAG, "ok"),
        ({"If-Match": "*"}, ETAG, "ok"),
        ({"If-Match": ETAG}, None, "NoSuchKey"),
        ({"If-Match": "*"}, None, "NoSuchKey"),
        ({"If-Match": OTHER}, ETAG, "PreconditionFailed"),
        ({"If-Match": ETAG, "If-None-Match": "*"}, ETAG, "NotImplemented"),
        ({"If-Match": ETAG, "If-None-Match": "*"}, None, "NotImplemented"),
        # Read-only conditions do not apply to writes.
        ({"If-Modified-Since": AFTER, "If-Unmodified-Since": BEFORE}, ETAG, "ok"),
    ],
)
def test_write_conditions(headers: dict[str, str], current: str | None, expected: str) -> None:
    assert _write(headers, current) == expected


def test_write_condition_errors() -> None:
    with pytest.raises(S3Error) as info:
        evaluate_write_conditions({"If-None-Match": "*"}, ETAG)
    assert (info.value.status, info.value.extra) == (412, {"Condition": "If-None-Match"})
    with pytest.raises(S3Error) as info:
        evaluate_write_conditions({"If-Match": ETAG}, None)
    assert info.value.status == 404
    with pytest.raises(S3Error) as info:
        evaluate_write_conditions({"If-None-Match": ETAG}, ETAG)
    assert (info.value.status, info.value.extra) == (412, {"Condition": "If-None-Match"})


# --------------------------------------------------------------------------- overrides


def test_response_overrides() -> None:
    query = {
        "response-content-type": "text/plain",
        "response-content-language": "en",
        "response-expires": "Thu, 01 Dec 1994 16:00:00 GMT",
        "response-cache-control": "no-cache",
        "response-content-disposition": 'attachment; filename="a.txt"',
        "response-content-encoding": "gzip",
        "response-x-custom": "ignored",
        "versionId": "x",
    }
    assert response_overrides(query) == {
        "Content-Type": "text/plain",
        "Content-Language": "en",
        "Expires": "Thu, 01 Dec 1994 16:00:00 GMT",
        "Cache-Control": "no-cache",
        "Content-Disposition": 'attachment; filename="a.txt"',
        "Content-Encoding": "gzip",
    }
    assert response_overrides({}) == {}
    assert response_overrides({"Response-Content-Type": "a/b"}) == {}


# --------------------------------------------------------------------------- metadata


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, {}),
        ({"x-amz-meta-color": "blue"}, {"color": "blue"}),
        ({"X-Amz-Meta-Color": "blue"}, {"color": "blue"}),
        ({"X-AMZ-META-Mixed-Case": "Value Kept"}, {"mixed-case": "Value Kept"}),
        ({"x-amz-meta-empty": ""}, {"empty": ""}),
        ({"x-amz-meta-": "nameless"}, {}),
        ({"x-amz-metadata-directive": "COPY", "x-amz-acl": "private"}, {}),
        ({"Content-Type": "a/b", "x-amz-meta-a": "1", "x-amz-meta-b": "2"}, {"a": "1", "b": "2"}),
        ({"x-amz-meta-u": "héllo"}, {"u": "héllo"}),
    ],
)
def test_extract_user_metadata(headers: dict[str, str], expected: dict[str, str]) -> None:
    assert extract_user_metadata(headers) == expected


@pytest.mark.parametrize(
    ("headers", "too_large"),
    [
        ({"x-amz-meta-k": "v" * 2047}, False),  # 1 + 2047 = 2048: at the limit
        ({"x-amz-meta-k": "v" * 2048}, True),
        ({"x-amz-meta-ab": "v" * 2047}, True),
        ({f"x-amz-meta-k{i}": "v" * 100 for i in range(19)}, False),  # 19 * 102 = 1938
        ({f"x-amz-meta-k{i:02d}": "v" * 100 for i in range(20)}, True),  # 20 * 103 = 2060
        ({"x-amz-meta-k": "é" * 1023 + "v"}, False),  # 1 + 2046 + 1 bytes of UTF-8
        ({"x-amz-meta-k": "é" * 1024}, True),  # 1 + 2048 bytes
        ({"x-amz-meta-k": "\udcff" * 2047}, False),  # undecodable bytes count as one
        ({"Content-Disposition": "x" * 5000}, False),  # only user metadata counts
    ],
)
def test_user_metadata_limit(headers: dict[str, str], too_large: bool) -> None:
    if too_large:
        with pytest.raises(S3Error) as info:
            extract_user_metadata(headers)
        assert (info.value.code, info.value.status) == ("MetadataTooLarge", 400)
    else:
        extract_user_metadata(headers)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, {}),
        (
            {
                "cache-control": "max-age=60",
                "Content-Disposition": "inline",
                "CONTENT-LANGUAGE": "de",
                "Expires": "Thu, 01 Dec 1994 16:00:00 GMT",
                "x-amz-website-redirect-location": "/other",
                "Content-Type": "text/plain",
                "Content-Length": "3",
                "x-amz-meta-a": "b",
            },
            {
                "Cache-Control": "max-age=60",
                "Content-Disposition": "inline",
                "Content-Language": "de",
                "Expires": "Thu, 01 Dec 1994 16:00:00 GMT",
                "x-amz-website-redirect-location": "/other",
            },
        ),
        ({"Content-Encoding": "gzip"}, {"Content-Encoding": "gzip"}),
        ({"Content-Encoding": "gzip, br"}, {"Content-Encoding": "gzip, br"}),
        ({"Content-Encoding": "aws-chunked"}, {}),
        ({"Content-Encoding": "AWS-Chunked"}, {}),
        ({"Content-Encoding": "aws-chunked,gzip"}, {"Content-Encoding": "gzip"}),
        ({"Content-Encoding": "gzip, aws-chunked"}, {"Content-Encoding": "gzip"}),
        ({"Content-Encoding": "aws-chunked, gzip, br"}, {"Content-Encoding": "gzip,br"}),
        ({"Expires": "not a date"}, {"Expires": "not a date"}),  # stored as given
        ({"Cache-Control": ""}, {}),
    ],
)
def test_stored_standard_headers(headers: dict[str, str], expected: dict[str, str]) -> None:
    assert stored_standard_headers(headers) == expected


# --------------------------------------------------------------------------- Content-MD5

_MD5 = hashlib.md5(b"hello").digest()


@pytest.mark.parametrize(
    "value",
    [base64.b64encode(_MD5).decode(), " " + base64.b64encode(_MD5).decode() + " "],
)
def test_parse_content_md5(value: str) -> None:
    assert parse_content_md5(value) == _MD5


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "not base64!",
        _MD5.hex(),  # hex, not base64
        base64.b64encode(_MD5).decode().rstrip("="),  # padding missing
        base64.b64encode(_MD5[:15]).decode(),
        base64.b64encode(_MD5 + b"\0").decode(),
        base64.b64encode(hashlib.sha256(b"hello").digest()).decode(),
        base64.urlsafe_b64encode(b"\xfb\xff" * 8).decode(),  # URL-safe alphabet
        "XUFAKrxLKna5cZ2REBfFkg==é",
    ],
)
def test_parse_content_md5_invalid(value: str) -> None:
    with pytest.raises(S3Error) as info:
        parse_content_md5(value)
    assert (info.value.code, info.value.status) == ("InvalidDigest", 400)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_content_md5_raises_only_s3_error(value: str) -> None:
    try:
        assert len(parse_content_md5(value)) == 16
    except S3Error as err:
        assert err.code == "InvalidDigest"
