"""ListMultipartUploads against a real server: order, paging with markers, prefix, delimiter.

The uploads are listed by key (UTF-8 bytes), then by initiation (upload ids are time-ordered);
every page size must give back the same sequence as one unpaged listing, each entry once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import pytest

from tests.server.conftest import RunningServer
from tests.server.test_s3_listing import parse, signed_get, texts

# Several uploads of some keys; keys around the delimiter, a key equal to a common prefix
# ("b/"), and bytes that order differently as UTF-8 than as code points would.
KEYS = ["a", "a", "a/b", "a/c", "a/c", "b", "b/", "b/x/y", "c", "é", "日本/語", "a b", "a+b"]


def _order(key: str) -> bytes:
    return key.encode()


@pytest.fixture(scope="module")
def uploads(server: RunningServer) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A bucket holding an upload per entry of KEYS; its (key, upload id) in listing order."""
    s3 = server.client()
    bucket = "list-uploads-paging"
    s3.create_bucket(Bucket=bucket)
    made = [(key, s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]) for key in KEYS]
    made.sort(key=lambda entry: (_order(entry[0]), entry[1]))
    yield bucket, made
    for key, upload_id in made:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    s3.delete_bucket(Bucket=bucket)


def _pages(s3: Any, bucket: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every page, following NextKeyMarker / NextUploadIdMarker as a client does."""
    while True:
        page = s3.list_multipart_uploads(Bucket=bucket, **kwargs)
        yield page
        if not page["IsTruncated"]:
            return
        kwargs["KeyMarker"] = page["NextKeyMarker"]
        kwargs.pop("UploadIdMarker", None)
        if page.get("NextUploadIdMarker"):
            kwargs["UploadIdMarker"] = page["NextUploadIdMarker"]


def _listed(pages: Iterator[dict[str, Any]]) -> list[tuple[str, str]]:
    """(key, upload id) of uploads and (prefix, "") of common prefixes, in page order."""
    out: list[tuple[str, str]] = []
    for page in pages:
        entries = [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        entries += [(p["Prefix"], "") for p in page.get("CommonPrefixes", [])]
        entries.sort(key=lambda e: (_order(e[0]), e[1]))  # a page interleaves both by key
        assert len(entries) <= page["MaxUploads"]
        out += entries
    return out


def test_one_page_lists_by_key_then_initiation(
    server: RunningServer, uploads: tuple[str, list[tuple[str, str]]]
) -> None:
    bucket, made = uploads
    page = server.client().list_multipart_uploads(Bucket=bucket)
    assert page["IsTruncated"] is False and page["MaxUploads"] == 1000
    assert [(u["Key"], u["UploadId"]) for u in page["Uploads"]] == made
    assert "NextKeyMarker" not in page or not page["NextKeyMarker"]
    times = [u["Initiated"] for u in page["Uploads"] if u["Key"] == "a"]
    assert times == sorted(times)


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_pages_of_any_size_give_back_every_upload_once(
    server: RunningServer, uploads: tuple[str, list[tuple[str, str]]], size: int
) -> None:
    bucket, made = uploads
    pages = list(_pages(server.client(), bucket, MaxUploads=size))
    assert _listed(iter(pages)) == made
    assert all(p["IsTruncated"] for p in pages[:-1]) and not pages[-1]["IsTruncated"]
    # A page that ends on an upload names it; the next starts right after it, even within
    # the uploads of one key.
    first = pages[0]
    assert first["NextKeyMarker"] == made[size - 1][0]
    assert first["NextUploadIdMarker"] == made[size - 1][1]


def test_key_marker_alone_skips_every_upload_of_that_key(
    server: RunningServer, uploads: tuple[str, list[tuple[str, str]]]
) -> None:
    bucket, made = uploads
    page = server.client().list_multipart_uploads(Bucket=bucket, KeyMarker="a")
    assert [(u["Key"], u["UploadId"]) for u in page["Uploads"]] == [
        m for m in made if _order(m[0]) > b"a"
    ]
    second_a = next(m for m in made if m[0] == "a")[1]
    page = server.client().list_multipart_uploads(
        Bucket=bucket, KeyMarker="a", UploadIdMarker=second_a
    )
    assert [(u["Key"], u["UploadId"]) for u in page["Uploads"]] == [
        m for m in made if (m[0] == "a" and m[1] > second_a) or _order(m[0]) > b"a"
    ]


@pytest.mark.parametrize("size", [1, 2, 1000])
def test_delimiter_rolls_keys_up_into_common_prefixes_across_pages(
    server: RunningServer, uploads: tuple[str, list[tuple[str, str]]], size: int
) -> None:
    bucket, made = uploads
    expected: list[tuple[str, str]] = []
    for key, upload_id in made:
        cut = key.find("/")
        entry = (key[: cut + 1], "") if cut >= 0 else (key, upload_id)
        if entry not in expected:
            expected.append(entry)
    pages = list(_pages(server.client(), bucket, Delimiter="/", MaxUploads=size))
    assert _listed(iter(pages)) == expected
    assert {"a/", "b/", "日本/"} <= {e[0] for e in expected if not e[1]}
    for page in pages[:-1]:  # a page ending on a common prefix resumes past all its keys
        if page.get("CommonPrefixes") and page["NextKeyMarker"].endswith("/"):
            assert not page.get("NextUploadIdMarker")


def test_prefix_and_delimiter_together(
    server: RunningServer, uploads: tuple[str, list[tuple[str, str]]]
) -> None:
    bucket, made = uploads
    pages = list(_pages(server.client(), bucket, Prefix="b/", Delimiter="/", MaxUploads=1))
    assert _listed(iter(pages)) == [("b/", next(u for k, u in made if k == "b/")), ("b/x/", "")]
    assert pages[0]["Prefix"] == "b/"
    only_a = list(_pages(server.client(), bucket, Prefix="a/"))
    assert _listed(iter(only_a)) == [m for m in made if m[0].startswith("a/")]


def test_encoding_type_url_and_bounds(
    server: RunningServer, uploads: tuple[str, list[tuple[str, str]]]
) -> None:
    bucket, made = uploads
    root = parse(signed_get(server, f"/{bucket}", {"uploads": "", "encoding-type": "url"}))
    keys = [unquote_plus(k) for k in texts(root, "s3:Upload/s3:Key")]
    assert keys == [k for k, _u in made]
    assert "%" in "".join(texts(root, "s3:Upload/s3:Key"))  # é and 日本 were encoded
    capped = parse(signed_get(server, f"/{bucket}", {"uploads": "", "max-uploads": "5000"}))
    assert texts(capped, "s3:MaxUploads") == ["1000"]
    bad = signed_get(server, f"/{bucket}", {"uploads": "", "max-uploads": "x"})
    assert bad.status_code == 400 and b"InvalidArgument" in bad.content
