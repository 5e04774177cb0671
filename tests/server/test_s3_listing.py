"""ListObjects (v1), ListObjectsV2 and their paginators against a real server."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, unquote_plus

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.server.conftest import RunningServer

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

# Keys chosen for their byte order and their encoding: "+" and " " and "%", a newline, a
# key equal to a common prefix ("b/"), unicode above and below the ASCII range's end.
KEYS = [
    "a",
    "a b",
    "a%2Fb",
    "a+b",
    "a/b",
    "a/b/c",
    "a/c",
    "b",
    "b/",
    "c/d/e",
    "c/f",
    "d",
    "line\nbreak",
    "tab\there",
    "zz",
    "é",
    "日本/語",
    "\U0001f600 emoji",
]
ORDERED = sorted(KEYS, key=lambda k: k.encode())


def by_bytes(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode())


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def signed_get(server: RunningServer, path: str, query: dict[str, str]) -> requests.Response:
    qs = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" if v != "" else quote(k, safe="-_.~")
        for k, v in query.items()
    )
    url = f"{server.endpoint}{path}?{qs}" if qs else server.endpoint + path
    request = AWSRequest(method="GET", url=url, headers={})
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", "us-east-1").add_auth(
        request
    )
    return requests.get(url, headers=dict(request.headers), timeout=10)


def parse(response: requests.Response) -> ET.Element:
    assert response.status_code == 200, response.text
    return ET.fromstring(response.content)


def texts(root: ET.Element, path: str) -> list[str]:
    return [e.text or "" for e in root.findall(path, {"s3": NS[1:-1]})]


@pytest.fixture(scope="module")
def keys_bucket(server: RunningServer) -> Iterator[str]:
    """A bucket holding :data:`KEYS` (size = index), shared by the read-only tests here."""
    s3 = server.client()
    name = f"listing-{time.monotonic_ns() % 10**9}"
    s3.create_bucket(Bucket=name)
    for i, key in enumerate(KEYS):
        s3.put_object(Bucket=name, Key=key, Body=b"x" * i)
    yield name
    s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": k} for k in KEYS]})
    s3.delete_bucket(Bucket=name)


MANY = 2500


def many_keys() -> list[str]:
    keys = []
    for i in range(MANY):
        key = f"{i % 5}/{i:05d}"
        if i % 10 == 0:
            key += "é"
        if i % 13 == 0:
            key += " +x"
        keys.append(key)
    return keys


@pytest.fixture(scope="module")
def big_bucket(server: RunningServer) -> Iterator[tuple[str, list[str]]]:
    s3 = server.client(max_pool_connections=32)
    name = f"many-{time.monotonic_ns() % 10**9}"
    s3.create_bucket(Bucket=name)
    keys = many_keys()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=name, Key=k, Body=b""), keys))
    yield name, by_bytes(keys)
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        s3.delete_objects(Bucket=name, Delete={"Objects": batch, "Quiet": True})
    s3.delete_bucket(Bucket=name)


# --- v1 ------------------------------------------------------------------------------------


def test_v1_lists_every_key_in_byte_order(s3: Any, keys_bucket: str) -> None:
    response = s3.list_objects(Bucket=keys_bucket)
    assert [o["Key"] for o in response["Contents"]] == ORDERED
    assert response["IsTruncated"] is False
    assert "NextMarker" not in response
    assert response["MaxKeys"] == 1000
    sizes = {o["Key"]: o["Size"] for o in response["Contents"]}
    assert sizes == {k: i for i, k in enumerate(KEYS)}
    first = response["Contents"][0]
    assert first["Owner"]["DisplayName"] == "root"
    assert first["StorageClass"] == "STANDARD"
    assert first["Key"] == "a"
    assert first["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'  # MD5 of its empty body


def test_v1_prefix(s3: Any, keys_bucket: str) -> None:
    response = s3.list_objects(Bucket=keys_bucket, Prefix="a/")
    assert [o["Key"] for o in response["Contents"]] == ["a/b", "a/b/c", "a/c"]
    assert response["Prefix"] == "a/"
    assert "CommonPrefixes" not in response
    none = s3.list_objects(Bucket=keys_bucket, Prefix="nothing-here")
    assert "Contents" not in none
    assert none["IsTruncated"] is False


def test_v1_delimiter_rolls_up_common_prefixes(s3: Any, keys_bucket: str) -> None:
    response = s3.list_objects(Bucket=keys_bucket, Delimiter="/")
    top = [k for k in ORDERED if "/" not in k]
    assert [o["Key"] for o in response["Contents"]] == top
    assert [p["Prefix"] for p in response["CommonPrefixes"]] == ["a/", "b/", "c/", "日本/"]
    assert response["Delimiter"] == "/"
    nested = s3.list_objects(Bucket=keys_bucket, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in nested["Contents"]] == ["a/b", "a/c"]
    assert [p["Prefix"] for p in nested["CommonPrefixes"]] == ["a/b/"]
    # a delimiter of several characters
    multi = s3.list_objects(Bucket=keys_bucket, Delimiter="/b")
    assert [p["Prefix"] for p in multi["CommonPrefixes"]] == ["a/b"]
    assert "a/b" not in [o["Key"] for o in multi["Contents"]]


def test_v1_marker(s3: Any, keys_bucket: str) -> None:
    response = s3.list_objects(Bucket=keys_bucket, Marker="a/c")
    assert [o["Key"] for o in response["Contents"]] == ORDERED[ORDERED.index("a/c") + 1 :]
    assert response["Marker"] == "a/c"
    # a marker that is no key: everything after it in byte order
    between = s3.list_objects(Bucket=keys_bucket, Marker="c")
    assert [o["Key"] for o in between["Contents"]] == [k for k in ORDERED if k.encode() > b"c"]
    past = s3.list_objects(Bucket=keys_bucket, Marker="\U0010ffff")
    assert "Contents" not in past
    assert past["IsTruncated"] is False


def test_v1_truncation_without_delimiter_has_no_next_marker(
    server: RunningServer, keys_bucket: str
) -> None:
    root = parse(signed_get(server, f"/{keys_bucket}", {"max-keys": "2"}))
    assert texts(root, "s3:Contents/s3:Key") == ORDERED[:2]
    assert root.findtext(NS + "IsTruncated") == "true"
    assert root.find(NS + "NextMarker") is None
    assert root.findtext(NS + "MaxKeys") == "2"
    assert root.findtext(NS + "Marker") == ""


def test_v1_truncation_with_delimiter_has_next_marker(
    server: RunningServer, s3: Any, keys_bucket: str
) -> None:
    root = parse(signed_get(server, f"/{keys_bucket}", {"delimiter": "/", "max-keys": "5"}))
    # a, a b, a%2Fb, a+b (keys) then a/ (common prefix): five entries
    assert texts(root, "s3:Contents/s3:Key") == ["a", "a b", "a%2Fb", "a+b"]
    assert texts(root, "s3:CommonPrefixes/s3:Prefix") == ["a/"]
    assert root.findtext(NS + "IsTruncated") == "true"
    assert root.findtext(NS + "NextMarker") == "a/"
    # resuming from a common prefix skips everything under it
    rest = s3.list_objects(Bucket=keys_bucket, Delimiter="/", Marker="a/", MaxKeys=2)
    assert [o["Key"] for o in rest["Contents"]] == ["b"]
    assert [p["Prefix"] for p in rest["CommonPrefixes"]] == ["b/"]
    assert rest["NextMarker"] == "b/"
    assert rest["IsTruncated"] is True
    # not truncated: no NextMarker even with a delimiter
    last = s3.list_objects(Bucket=keys_bucket, Delimiter="/", Marker="é")
    assert last["IsTruncated"] is False
    assert "NextMarker" not in last


def test_v1_max_keys_zero(s3: Any, keys_bucket: str) -> None:
    response = s3.list_objects(Bucket=keys_bucket, MaxKeys=0)
    assert "Contents" not in response
    assert response["IsTruncated"] is False
    assert response["MaxKeys"] == 0


@pytest.mark.parametrize("value", ["-1", "abc", "1.5"])
def test_invalid_max_keys(server: RunningServer, keys_bucket: str, value: str) -> None:
    for query in ({"max-keys": value}, {"list-type": "2", "max-keys": value}):
        response = signed_get(server, f"/{keys_bucket}", query)
        assert response.status_code == 400
        error = ET.fromstring(response.content)
        assert error.findtext("Code") == "InvalidArgument"
        assert error.findtext("ArgumentName") == "max-keys"


def test_invalid_encoding_type(server: RunningServer, keys_bucket: str) -> None:
    response = signed_get(server, f"/{keys_bucket}", {"encoding-type": "base64"})
    assert response.status_code == 400
    assert ET.fromstring(response.content).findtext("Code") == "InvalidArgument"


def test_list_missing_bucket(s3: Any) -> None:
    for call in (s3.list_objects, s3.list_objects_v2):
        with pytest.raises(ClientError) as exc:
            call(Bucket="no-such-listing-bucket")
        assert error_of(exc) == (404, "NoSuchBucket")


# --- encoding-type=url ---------------------------------------------------------------------


def test_encoding_type_url_encodes_keys_like_aws(server: RunningServer, keys_bucket: str) -> None:
    root = parse(signed_get(server, f"/{keys_bucket}", {"encoding-type": "url"}))
    encoded = texts(root, "s3:Contents/s3:Key")
    assert [unquote_plus(k) for k in encoded] == ORDERED
    assert root.findtext(NS + "EncodingType") == "url"
    got = dict(zip(ORDERED, encoded, strict=True))
    assert got["a b"] == "a+b"
    assert got["a+b"] == "a%2Bb"
    assert got["a%2Fb"] == "a%252Fb"
    assert got["a/b/c"] == "a/b/c"
    assert got["line\nbreak"] == "line%0Abreak"
    assert got["é"] == "%C3%A9"
    assert got["日本/語"] == "%E6%97%A5%E6%9C%AC/%E8%AA%9E"


def test_encoding_type_url_encodes_prefix_delimiter_and_common_prefixes(
    server: RunningServer, keys_bucket: str
) -> None:
    root = parse(
        signed_get(
            server,
            f"/{keys_bucket}",
            {"encoding-type": "url", "delimiter": "/", "prefix": "日", "list-type": "2"},
        )
    )
    assert root.findtext(NS + "Prefix") == "%E6%97%A5"
    assert root.findtext(NS + "Delimiter") == "/"  # "/" is left as is, like AWS
    assert texts(root, "s3:CommonPrefixes/s3:Prefix") == ["%E6%97%A5%E6%9C%AC/"]


def test_without_encoding_type_keys_are_plain_xml_text(
    server: RunningServer, keys_bucket: str
) -> None:
    root = parse(signed_get(server, f"/{keys_bucket}", {"prefix": "a"}))
    assert texts(root, "s3:Contents/s3:Key") == [k for k in ORDERED if k.startswith("a")]
    assert root.find(NS + "EncodingType") is None


def test_boto3_round_trips_awkward_keys_through_listing(s3: Any, keys_bucket: str) -> None:
    for key in ("a b", "a+b", "a%2Fb", "line\nbreak", "日本/語", "\U0001f600 emoji"):
        v1 = s3.list_objects(Bucket=keys_bucket, Prefix=key)
        assert [o["Key"] for o in v1["Contents"]] == [key]
        assert v1["Prefix"] == key
        v2 = s3.list_objects_v2(Bucket=keys_bucket, Prefix=key, StartAfter="")
        assert [o["Key"] for o in v2["Contents"]] == [key]
        assert v2["Prefix"] == key
        after = s3.list_objects_v2(Bucket=keys_bucket, StartAfter=key)
        assert [o["Key"] for o in after.get("Contents", [])] == [
            k for k in ORDERED if k.encode() > key.encode()
        ]


# --- v2 ------------------------------------------------------------------------------------


def test_v2_lists_with_key_count_and_no_owner(s3: Any, keys_bucket: str) -> None:
    response = s3.list_objects_v2(Bucket=keys_bucket)
    assert [o["Key"] for o in response["Contents"]] == ORDERED
    assert response["KeyCount"] == len(KEYS)
    assert response["IsTruncated"] is False
    assert "NextContinuationToken" not in response
    assert all("Owner" not in o for o in response["Contents"])
    owned = s3.list_objects_v2(Bucket=keys_bucket, FetchOwner=True)
    assert all(o["Owner"]["DisplayName"] == "root" for o in owned["Contents"])
    assert len({o["Owner"]["ID"] for o in owned["Contents"]}) == 1


def test_v2_continuation_token_walks_every_key(s3: Any, keys_bucket: str) -> None:
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"Bucket": keys_bucket, "MaxKeys": 4}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_objects_v2(**kwargs)
        pages += 1
        assert page["KeyCount"] == len(page.get("Contents", []))
        if token:
            assert page["ContinuationToken"] == token
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            assert "NextContinuationToken" not in page
            break
        token = page["NextContinuationToken"]
        assert token
    assert seen == ORDERED
    assert pages == -(-len(KEYS) // 4)


def test_v2_start_after_and_token_precedence(s3: Any, keys_bucket: str) -> None:
    response = s3.list_objects_v2(Bucket=keys_bucket, StartAfter="c/f", MaxKeys=2)
    assert response["StartAfter"] == "c/f"
    assert [o["Key"] for o in response["Contents"]] == ["d", "line\nbreak"]
    token = response["NextContinuationToken"]
    # With both, the token decides where to resume; StartAfter is still echoed.
    both = s3.list_objects_v2(Bucket=keys_bucket, StartAfter="a", ContinuationToken=token)
    assert both["StartAfter"] == "a"
    assert [o["Key"] for o in both["Contents"]] == ORDERED[ORDERED.index("line\nbreak") + 1 :]


def test_v2_delimiter_with_max_keys_counts_prefixes(s3: Any, keys_bucket: str) -> None:
    page = s3.list_objects_v2(Bucket=keys_bucket, Delimiter="/", MaxKeys=5)
    assert [o["Key"] for o in page["Contents"]] == ["a", "a b", "a%2Fb", "a+b"]
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["a/"]
    assert page["KeyCount"] == 5
    assert page["IsTruncated"] is True
    rest = s3.list_objects_v2(
        Bucket=keys_bucket, Delimiter="/", ContinuationToken=page["NextContinuationToken"]
    )
    assert [p["Prefix"] for p in rest["CommonPrefixes"]] == ["b/", "c/", "日本/"]
    assert "a/b" not in [o["Key"] for o in rest["Contents"]]


def test_v2_max_keys_zero(s3: Any, keys_bucket: str) -> None:
    response = s3.list_objects_v2(Bucket=keys_bucket, MaxKeys=0)
    assert response["KeyCount"] == 0
    assert "Contents" not in response
    assert response["IsTruncated"] is False


def test_v2_bad_continuation_token(server: RunningServer, keys_bucket: str) -> None:
    response = signed_get(
        server, f"/{keys_bucket}", {"list-type": "2", "continuation-token": "!!not-base64!!"}
    )
    assert response.status_code == 400
    assert ET.fromstring(response.content).findtext("Code") == "InvalidArgument"


def test_v2_empty_continuation_token_lists_from_the_start(s3: Any, keys_bucket: str) -> None:
    page = s3.list_objects_v2(Bucket=keys_bucket, ContinuationToken="", MaxKeys=2)
    assert page["ContinuationToken"] == ""
    assert [o["Key"] for o in page["Contents"]] == ["a", "a b"]


def test_list_type_other_than_2_is_invalid(server: RunningServer, keys_bucket: str) -> None:
    response = signed_get(server, f"/{keys_bucket}", {"list-type": "3"})
    assert response.status_code == 400
    assert ET.fromstring(response.content).findtext("Code") == "InvalidArgument"


# --- many keys -----------------------------------------------------------------------------


def test_v2_paginator_returns_every_key_once_in_order(
    s3: Any, big_bucket: tuple[str, list[str]]
) -> None:
    name, expected = big_bucket
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=name))
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert keys == expected
    assert len(pages) == 3
    assert [p["KeyCount"] for p in pages] == [1000, 1000, 500]


def test_v1_paginator_returns_every_key_once_in_order(
    s3: Any, big_bucket: tuple[str, list[str]]
) -> None:
    name, expected = big_bucket
    paginator = s3.get_paginator("list_objects")
    pages = list(paginator.paginate(Bucket=name, PaginationConfig={"PageSize": 700}))
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert keys == expected
    assert len(pages) == 4
    assert all("NextMarker" not in p for p in pages)


def test_paginators_with_prefix_and_delimiter(s3: Any, big_bucket: tuple[str, list[str]]) -> None:
    name, expected = big_bucket
    v2 = s3.get_paginator("list_objects_v2")
    pages = list(v2.paginate(Bucket=name, Delimiter="/", PaginationConfig={"PageSize": 2}))
    prefixes = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
    assert prefixes == ["0/", "1/", "2/", "3/", "4/"]
    assert all("Contents" not in page for page in pages)
    v1 = s3.get_paginator("list_objects")
    pages = list(v1.paginate(Bucket=name, Delimiter="/", PaginationConfig={"PageSize": 3}))
    assert [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])] == prefixes
    assert pages[0]["NextMarker"] == "2/"
    under = v2.paginate(Bucket=name, Prefix="3/", PaginationConfig={"PageSize": 150})
    keys = [o["Key"] for page in under for o in page.get("Contents", [])]
    assert keys == [k for k in expected if k.startswith("3/")]
    assert len(keys) == MANY // 5


def test_versions_paginator_over_many_keys(s3: Any, big_bucket: tuple[str, list[str]]) -> None:
    name, expected = big_bucket
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=name)
    versions = [v for p in pages for v in p.get("Versions", [])]
    assert [v["Key"] for v in versions] == expected
    assert {v["VersionId"] for v in versions} == {"null"}


def test_max_keys_above_1000_is_capped(s3: Any, big_bucket: tuple[str, list[str]]) -> None:
    name, expected = big_bucket
    for call in (s3.list_objects, s3.list_objects_v2):
        response = call(Bucket=name, MaxKeys=5000)
        assert [o["Key"] for o in response["Contents"]] == expected[:1000]
        assert response["IsTruncated"] is True
