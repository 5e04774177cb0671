"""XML in and out: shapes, escaping, url encoding, defensive parsing.

Responses are checked twice: element names and order with ElementTree, and values through
botocore's own rest-xml parser for the S3 model (what boto3 users will actually see).
Request parsers are fed the bodies botocore serializes, plus hostile documents.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import botocore.session
import pytest
from botocore.handlers import (
    decode_list_object,
    decode_list_object_v2,
    decode_list_object_versions,
    parse_get_bucket_location,
)
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from hypothesis import given
from hypothesis import strategies as st

from stratum.s3 import xml as x
from stratum.s3.errors import S3Error
from stratum.s3.xml_requests import (
    MAX_BUCKET_TAGS,
    CompletedPart,
    parse_complete_multipart,
    parse_create_bucket_configuration,
    parse_delete_objects,
    parse_tagging,
)

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
PROLOG = b'<?xml version="1.0" encoding="UTF-8"?>\n'
OWNER = x.Owner("abc123", "alice")
T0 = 1_700_000_000.5  # 2023-11-14T22:13:20.500Z
HOSTILE = [
    "<script>",
    "a&b",
    "]]>",
    "x]]>y<![CDATA[z",
    "\"quoted'",
    "café ✓ 😀",
    "tab\there",
    "a\nb",
]

_S3_MODEL = botocore.session.get_session().get_service_model("s3")
_PARSER = create_parser("rest-xml")
_SERIALIZER = create_serializer("rest-xml")


def botocore_parse(operation: str, body: bytes, status: int = 200) -> dict[str, Any]:
    """What boto3 returns for this response body (auto url-decoding as botocore applies)."""
    op = _S3_MODEL.operation_model(operation)
    response = {"body": body, "headers": {}, "status_code": status}
    parsed: dict[str, Any] = _PARSER.parse(response, op.output_shape)
    decode = {
        "ListObjects": decode_list_object,
        "ListObjectsV2": decode_list_object_v2,
        "ListObjectVersions": decode_list_object_versions,
    }.get(operation)
    if decode is not None:
        decode(parsed=parsed, context={"encoding_type_auto_set": True})
    if operation == "GetBucketLocation":  # botocore reads this one by hand
        parse_get_bucket_location(parsed, SimpleNamespace(raw=True, content=body))
    return parsed


def botocore_body(operation: str, params: dict[str, Any]) -> bytes:
    """The request body botocore sends for ``operation``."""
    request = _SERIALIZER.serialize_to_request(params, _S3_MODEL.operation_model(operation))
    body: bytes = request["body"]
    return body


def tree(body: bytes, root: str, *, namespace: bool = True) -> ET.Element:
    assert body.startswith(PROLOG)
    element = ET.fromstring(body)
    assert element.tag == (NS if namespace else "") + root
    return element


def names(element: ET.Element) -> list[str]:
    return [child.tag.removeprefix(NS) for child in element]


def child(element: ET.Element, path: str) -> ET.Element:
    found = element.find("/".join(NS + p for p in path.split("/")))
    assert found is not None, path
    return found


def text(element: ET.Element, path: str) -> str:
    return child(element, path).text or ""


# --- escaping and encoding --------------------------------------------------------------


@pytest.mark.parametrize("value", [*HOSTILE, "", "cr\rlf\r\n", "\u2028\u0085\x7f"])
def test_text_round_trips_exactly(value: str) -> None:
    body = x.tagging([(value, value)])
    assert text(tree(body, "Tagging"), "TagSet/Tag/Key") == value


def test_illegal_xml_characters_become_replacement_characters() -> None:
    body = x.tagging([("a\x00b\x01c\x1fd\ufffe", "v")])
    assert text(tree(body, "Tagging"), "TagSet/Tag/Key") == "a\ufffdb\ufffdc\ufffdd\ufffd"


@given(st.text())
def test_any_text_is_well_formed(value: str) -> None:
    body = x.error_xml("InternalError", value, value, "req", {"Key": value})
    root = tree(body, "Error", namespace=False)
    expected = x._ILLEGAL.sub("\ufffd", value)
    assert root.findtext("Message") == expected
    assert root.findtext("Key") == expected


def test_attribute_escaping() -> None:
    w = x.XmlWriter("Root", namespace=None)
    w.start("E", {"a": "\"'<&>\n\t\r"})
    body = w.finish()
    element = ET.fromstring(body)
    assert element[0].get("a") == "\"'<&>\n\t\r"


def test_check_name() -> None:
    assert x.check_name("BucketName") == "BucketName"
    for bad in ("", "a b", "<x>", "1abc", "a>b", "xsi:type", "a\n"):
        with pytest.raises(ValueError):
            x.check_name(bad)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("plain/key-_.txt", "plain/key-_.txt"),
        ("a b", "a+b"),
        ("a+b", "a%2Bb"),
        ("100%", "100%25"),
        ("x~y*z", "x%7Ey*z"),
        ("café", "caf%C3%A9"),
        ("a\x01b\nc", "a%01b%0Ac"),
        ("&<>", "%26%3C%3E"),
    ],
)
def test_url_encode(value: str, encoded: str) -> None:
    assert x.url_encode(value) == encoded
    assert unquote_plus(encoded) == value


@given(st.text(st.characters(blacklist_categories=["Cs"])))
def test_url_encode_round_trips(value: str) -> None:
    encoded = x.url_encode(value)
    assert unquote_plus(encoded) == value
    assert encoded == quote_plus(value, safe="/*").replace("~", "%7E")  # Java URLEncoder + "/"
    assert encoded.isascii() and x._TEXT_SPECIAL.search(encoded) is None


def test_timestamp_and_etag() -> None:
    assert x.timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert x.timestamp(T0) == "2023-11-14T22:13:20.500Z"
    assert x.timestamp(1_141_041_600.9996) == "2006-02-27T12:00:01.000Z"
    assert x.quote_etag("abc") == '"abc"'
    assert x.quote_etag('"abc-2"') == '"abc-2"'


# --- errors and service -----------------------------------------------------------------


def test_error_xml() -> None:
    body = x.error_xml(
        "NoSuchKey",
        "The specified key does not exist.",
        "/bkt/a&b",
        "REQ1",
        {"BucketName": "bkt", "Key": "a&b"},
        host_id="HOST1",
    )
    root = tree(body, "Error", namespace=False)
    assert names(root) == [
        "Code",
        "Message",
        "BucketName",
        "Key",
        "Resource",
        "RequestId",
        "HostId",
    ]
    assert root.findtext("Key") == "a&b"
    parsed = botocore_parse("GetObject", body, status=404)
    assert parsed["Error"]["Code"] == "NoSuchKey"
    assert parsed["Error"]["Message"] == "The specified key does not exist."
    # boto3 takes RequestId/HostId from the x-amz-request-id / x-amz-id-2 headers
    assert (root.findtext("RequestId"), root.findtext("HostId")) == ("REQ1", "HOST1")


def test_error_xml_rejects_bad_extra_names() -> None:
    with pytest.raises(ValueError):
        x.error_xml("InternalError", "m", None, "r", {"<evil>": "v"})


def test_error_xml_without_resource() -> None:
    root = tree(x.error_xml("SlowDown", "m", None, "r", {}), "Error", namespace=False)
    assert names(root) == ["Code", "Message", "RequestId", "HostId"]


def test_list_buckets() -> None:
    body = x.list_buckets(OWNER, [x.BucketEntry("one", T0), x.BucketEntry("two", 0)])
    root = tree(body, "ListAllMyBucketsResult")
    assert names(root) == ["Owner", "Buckets"]
    assert names(child(root, "Owner")) == ["ID", "DisplayName"]
    assert names(child(root, "Buckets/Bucket")) == ["Name", "CreationDate"]
    parsed = botocore_parse("ListBuckets", body)
    assert [b["Name"] for b in parsed["Buckets"]] == ["one", "two"]
    assert parsed["Buckets"][0]["CreationDate"].timestamp() == T0
    assert parsed["Owner"] == {"ID": "abc123", "DisplayName": "alice"}


def test_list_buckets_empty() -> None:
    root = tree(x.list_buckets(OWNER, []), "ListAllMyBucketsResult")
    assert names(child(root, "Buckets")) == []
    assert botocore_parse("ListBuckets", x.list_buckets(OWNER, []))["Buckets"] == []


# --- listings ---------------------------------------------------------------------------

ODD_KEYS = ["dir/a b+c.txt", "dir/%41~*", "ctl\x01\x7f\r\n", *HOSTILE]


def entries(keys: list[str], owner: x.Owner | None = None) -> list[x.ObjectEntry]:
    return [
        x.ObjectEntry(k, T0, "d41d8cd98f00b204e9800998ecf8427e", i, owner=owner)
        for i, k in enumerate(keys)
    ]


def test_list_objects_v1_shape() -> None:
    result = x.ListObjectsV1Result(
        bucket="bkt",
        prefix="dir/",
        marker="dir/a",
        max_keys=2,
        is_truncated=True,
        contents=entries(["dir/b"], OWNER),
        common_prefixes=["dir/sub/"],
        delimiter="/",
        next_marker="dir/sub/",
    )
    root = tree(x.list_objects_v1(result), "ListBucketResult")
    assert names(root) == [
        "Name",
        "Prefix",
        "Marker",
        "NextMarker",
        "MaxKeys",
        "Delimiter",
        "IsTruncated",
        "Contents",
        "CommonPrefixes",
    ]
    assert names(child(root, "Contents")) == [
        "Key",
        "LastModified",
        "ETag",
        "Size",
        "StorageClass",
        "Owner",
    ]
    assert text(root, "Contents/ETag") == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert text(root, "Contents/LastModified") == "2023-11-14T22:13:20.500Z"
    assert text(root, "IsTruncated") == "true"
    parsed = botocore_parse("ListObjects", x.list_objects_v1(result))
    assert parsed["NextMarker"] == "dir/sub/"
    assert parsed["CommonPrefixes"] == [{"Prefix": "dir/sub/"}]
    assert parsed["Contents"][0]["Owner"] == {"ID": "abc123", "DisplayName": "alice"}
    assert parsed["Contents"][0]["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'


def test_list_objects_v1_minimal() -> None:
    result = x.ListObjectsV1Result("bkt", "", "", 1000, False, [])
    root = tree(x.list_objects_v1(result), "ListBucketResult")
    assert names(root) == ["Name", "Prefix", "Marker", "MaxKeys", "IsTruncated"]


@pytest.mark.parametrize("encoding", [None, "url"])
def test_list_objects_v1_keys_survive(encoding: str | None) -> None:
    keys = [k for k in ODD_KEYS if encoding or x._ILLEGAL.search(k) is None]
    result = x.ListObjectsV1Result(
        bucket="bkt",
        prefix="dir/ +",
        marker="m a+",
        max_keys=1000,
        is_truncated=True,
        contents=entries(keys),
        common_prefixes=["p q+/"],
        delimiter="/",
        next_marker="n a+",
        encoding_type=encoding,
    )
    parsed = botocore_parse("ListObjects", x.list_objects_v1(result))
    assert [c["Key"] for c in parsed["Contents"]] == keys
    assert parsed["CommonPrefixes"] == [{"Prefix": "p q+/"}]
    assert (parsed["Marker"], parsed["NextMarker"]) == ("m a+", "n a+")
    # The v1 Prefix is echoed as sent, encoding-type or not (botocore decodes no v1 Prefix).
    assert parsed["Prefix"] == "dir/ +"
    if encoding:
        assert parsed["EncodingType"] == "url"


def test_list_objects_v2_shape() -> None:
    result = x.ListObjectsV2Result(
        bucket="bkt",
        prefix="",
        max_keys=3,
        is_truncated=True,
        contents=entries(["a", "b"]),
        common_prefixes=["c/"],
        delimiter="/",
        start_after="0",
        continuation_token="tok+/=",
        next_continuation_token="next+/=",
        encoding_type="url",
    )
    body = x.list_objects_v2(result)
    root = tree(body, "ListBucketResult")
    assert names(root) == [
        "Name",
        "Prefix",
        "StartAfter",
        "ContinuationToken",
        "NextContinuationToken",
        "KeyCount",
        "MaxKeys",
        "Delimiter",
        "EncodingType",
        "IsTruncated",
        "Contents",
        "Contents",
        "CommonPrefixes",
    ]
    assert names(child(root, "Contents")) == ["Key", "LastModified", "ETag", "Size", "StorageClass"]
    assert text(root, "KeyCount") == "3"
    parsed = botocore_parse("ListObjectsV2", body)
    # tokens are opaque: never url-encoded, so they come back as sent
    assert parsed["ContinuationToken"] == "tok+/="
    assert parsed["NextContinuationToken"] == "next+/="
    assert parsed["KeyCount"] == 3
    assert parsed["Delimiter"] == "/"


@pytest.mark.parametrize("encoding", [None, "url"])
def test_list_objects_v2_keys_survive(encoding: str | None) -> None:
    keys = [k for k in ODD_KEYS if encoding or x._ILLEGAL.search(k) is None]
    result = x.ListObjectsV2Result(
        bucket="bkt",
        prefix="p +&",
        max_keys=1000,
        is_truncated=False,
        contents=entries(keys),
        common_prefixes=["p +&x/", "p +&ü~/"],
        delimiter="/",
        start_after="p +&",
        encoding_type=encoding,
    )
    parsed = botocore_parse("ListObjectsV2", x.list_objects_v2(result))
    assert [c["Key"] for c in parsed["Contents"]] == keys
    assert [c["Prefix"] for c in parsed["CommonPrefixes"]] == ["p +&x/", "p +&ü~/"]
    assert (parsed["Prefix"], parsed["StartAfter"]) == ("p +&", "p +&")


def test_control_characters_are_listed_as_aws_lists_them() -> None:
    keys = ["a\x01b", "nul\x00", "esc\x1b[1m", "cr\r", "\ufffe", "bad\udcff"]
    result = x.ListObjectsV2Result("bkt", "ctl\x02", 1000, False, entries(keys))
    body = x.list_objects_v2(result)
    for listed in (b"a&#x1;b", b"nul&#x0;", b"esc&#x1b;[1m", b"cr&#13;", b"&#xfffe;"):
        assert b"<Key>" + listed + b"</Key>" in body
    assert b"<Key>bad\xef\xbf\xbd</Key>" in body  # not a character: a byte that was not UTF-8
    assert b"<Prefix>ctl&#x2;</Prefix>" in body
    # Exact, and what strict parsers (botocore's, expat) refuse: hence encoding-type=url.
    with pytest.raises(Exception, match=r"invalid character|invalid XML"):
        botocore_parse("ListObjectsV2", body)
    encoded = x.list_objects_v2(dataclasses.replace(result, encoding_type="url"))
    parsed = botocore_parse("ListObjectsV2", encoded)
    assert [unquote_plus(c["Key"]) for c in parsed["Contents"]][:5] == keys[:5]


def test_other_responses_stay_well_formed() -> None:
    body = x.complete_multipart_upload("http://h/b/k", "b", "a\x01b", "etag")
    assert b"<Key>a\xef\xbf\xbdb</Key>" in body


def test_unknown_encoding_type_is_a_bug() -> None:
    with pytest.raises(ValueError):
        x.list_objects_v2(x.ListObjectsV2Result("bkt", "", 1, False, [], encoding_type="base64"))


def test_list_object_versions() -> None:
    vid = "0006a1b2c3d4e5f6000000000a0b0c0d"
    result = x.ListObjectVersionsResult(
        bucket="bkt",
        prefix="",
        key_marker="k +",
        version_id_marker="",
        max_keys=2,
        is_truncated=True,
        versions=[
            x.VersionEntry("a b+c", vid, True, 0.0, delete_marker=True),
            x.VersionEntry("a b+c", "null", False, 0.0, '"e"', 3),
        ],
        common_prefixes=["d +/"],
        delimiter="/",
        next_key_marker="a b+c",
        next_version_id_marker="null",
        encoding_type="url",
        owner=OWNER,
    )
    body = x.list_object_versions(result)
    root = tree(body, "ListVersionsResult")
    assert names(root) == [
        "Name",
        "Prefix",
        "KeyMarker",
        "VersionIdMarker",
        "NextKeyMarker",
        "NextVersionIdMarker",
        "MaxKeys",
        "Delimiter",
        "EncodingType",
        "IsTruncated",
        "DeleteMarker",
        "Version",
        "CommonPrefixes",
    ]
    assert names(child(root, "Version")) == [
        "Key",
        "VersionId",
        "IsLatest",
        "LastModified",
        "ETag",
        "Size",
        "StorageClass",
        "Owner",
    ]
    assert names(child(root, "DeleteMarker")) == [
        "Key",
        "VersionId",
        "IsLatest",
        "LastModified",
        "Owner",
    ]
    parsed = botocore_parse("ListObjectVersions", body)
    (version,) = parsed["Versions"]
    assert (version["Key"], version["VersionId"], version["IsLatest"]) == ("a b+c", "null", False)
    (marker,) = parsed["DeleteMarkers"]
    assert (marker["Key"], marker["VersionId"], marker["IsLatest"]) == ("a b+c", vid, True)
    assert (parsed["KeyMarker"], parsed["NextKeyMarker"]) == ("k +", "a b+c")
    assert parsed["NextVersionIdMarker"] == "null"
    assert parsed["CommonPrefixes"] == [{"Prefix": "d +/"}]


# --- bucket configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "expected"), [("us-east-1", None), (None, None), ("eu-west-1", "eu-west-1")]
)
def test_location_constraint(region: str | None, expected: str | None) -> None:
    body = x.location_constraint(region)
    root = tree(body, "LocationConstraint")
    assert root.text == expected and len(root) == 0
    assert botocore_parse("GetBucketLocation", body).get("LocationConstraint") == expected


def test_versioning_configuration() -> None:
    body = x.versioning_configuration()
    assert len(tree(body, "VersioningConfiguration")) == 0
    assert "Status" not in botocore_parse("GetBucketVersioning", body)
    assert botocore_parse("GetBucketVersioning", x.versioning_configuration("Enabled"))[
        "Status"
    ] == ("Enabled")


def test_access_control_policy() -> None:
    body = x.access_control_policy(OWNER)
    root = tree(body, "AccessControlPolicy")
    assert names(root) == ["Owner", "AccessControlList"]
    grant = child(root, "AccessControlList/Grant")
    assert names(grant) == ["Grantee", "Permission"]
    grantee = child(grant, "Grantee")
    assert grantee.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "CanonicalUser"
    for operation in ("GetBucketAcl", "GetObjectAcl"):
        parsed = botocore_parse(operation, body)
        assert parsed["Owner"] == {"ID": "abc123", "DisplayName": "alice"}
        assert parsed["Grants"] == [
            {
                "Grantee": {"ID": "abc123", "DisplayName": "alice", "Type": "CanonicalUser"},
                "Permission": "FULL_CONTROL",
            }
        ]


def test_tagging() -> None:
    body = x.tagging([("k1", "v1"), ("k&2", "")])
    root = tree(body, "Tagging")
    assert names(root) == ["TagSet"]
    assert names(child(root, "TagSet/Tag")) == ["Key", "Value"]
    parsed = botocore_parse("GetObjectTagging", body)
    assert parsed["TagSet"] == [{"Key": "k1", "Value": "v1"}, {"Key": "k&2", "Value": ""}]
    assert botocore_parse("GetBucketTagging", x.tagging([]))["TagSet"] == []


# --- object operations ------------------------------------------------------------------


def test_copy_results() -> None:
    body = x.copy_object_result("abc", T0)
    root = tree(body, "CopyObjectResult")
    assert names(root) == ["LastModified", "ETag"]
    parsed = botocore_parse("CopyObject", body)["CopyObjectResult"]
    assert (parsed["ETag"], parsed["LastModified"].timestamp()) == ('"abc"', T0)
    body = x.copy_part_result("def", T0)
    assert names(tree(body, "CopyPartResult")) == ["LastModified", "ETag"]
    assert botocore_parse("UploadPartCopy", body)["CopyPartResult"]["ETag"] == '"def"'


def test_delete_result() -> None:
    deleted = [x.DeletedEntry("a&b"), x.DeletedEntry("c", "null")]
    errors = [x.DeleteError("d<", "AccessDenied", "Access Denied")]
    body = x.delete_result(deleted, errors, quiet=False)
    root = tree(body, "DeleteResult")
    assert names(root) == ["Deleted", "Deleted", "Error"]
    assert names(child(root, "Error")) == ["Key", "Code", "Message"]
    parsed = botocore_parse("DeleteObjects", body)
    assert parsed["Deleted"] == [{"Key": "a&b"}, {"Key": "c", "VersionId": "null"}]
    assert parsed["Errors"] == [{"Key": "d<", "Code": "AccessDenied", "Message": "Access Denied"}]
    quiet = tree(x.delete_result(deleted, errors, quiet=True), "DeleteResult")
    assert names(quiet) == ["Error"]
    assert names(tree(x.delete_result(deleted, [], quiet=True), "DeleteResult")) == []


# --- multipart --------------------------------------------------------------------------


def test_initiate_and_complete() -> None:
    body = x.initiate_multipart_upload("bkt", "a b&c", "UP1")
    assert names(tree(body, "InitiateMultipartUploadResult")) == ["Bucket", "Key", "UploadId"]
    parsed = botocore_parse("CreateMultipartUpload", body)
    assert (parsed["Bucket"], parsed["Key"], parsed["UploadId"]) == ("bkt", "a b&c", "UP1")

    body = x.complete_multipart_upload("http://h/bkt/a%20b", "bkt", "a b", "abc-2")
    root = tree(body, "CompleteMultipartUploadResult")
    assert names(root) == ["Location", "Bucket", "Key", "ETag"]
    parsed = botocore_parse("CompleteMultipartUpload", body)
    assert (parsed["Location"], parsed["Key"], parsed["ETag"]) == (
        "http://h/bkt/a%20b",
        "a b",
        '"abc-2"',
    )


def test_list_parts() -> None:
    result = x.ListPartsResult(
        bucket="bkt",
        key="k&",
        upload_id="UP1",
        owner=OWNER,
        part_number_marker=1,
        max_parts=2,
        is_truncated=True,
        parts=[
            x.PartEntry(2, T0, "e2", 5 << 20, {"ChecksumCRC32": "AAAAAA=="}),
            x.PartEntry(3, T0, "e3", 7),
        ],
        next_part_number_marker=3,
    )
    body = x.list_parts(result)
    root = tree(body, "ListPartsResult")
    assert names(root) == [
        "Bucket",
        "Key",
        "UploadId",
        "Initiator",
        "Owner",
        "StorageClass",
        "PartNumberMarker",
        "NextPartNumberMarker",
        "MaxParts",
        "IsTruncated",
        "Part",
        "Part",
    ]
    assert names(child(root, "Part")) == [
        "PartNumber",
        "LastModified",
        "ETag",
        "Size",
        "ChecksumCRC32",
    ]
    parsed = botocore_parse("ListParts", body)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parsed["Parts"]] == [
        (2, '"e2"', 5 << 20),
        (3, '"e3"', 7),
    ]
    assert parsed["Parts"][0]["ChecksumCRC32"] == "AAAAAA=="
    assert (parsed["NextPartNumberMarker"], parsed["IsTruncated"]) == (3, True)
    assert parsed["Initiator"] == {"ID": "abc123", "DisplayName": "alice"}


def test_list_multipart_uploads() -> None:
    result = x.ListMultipartUploadsResult(
        bucket="bkt",
        key_marker="",
        upload_id_marker="",
        max_uploads=1000,
        is_truncated=False,
        uploads=[x.UploadEntry("a b", "UP1", T0, OWNER)],
        common_prefixes=["dir/"],
        prefix="",
        delimiter="/",
    )
    body = x.list_multipart_uploads(result)
    root = tree(body, "ListMultipartUploadsResult")
    assert names(root) == [
        "Bucket",
        "KeyMarker",
        "UploadIdMarker",
        "Delimiter",
        "Prefix",
        "MaxUploads",
        "IsTruncated",
        "Upload",
        "CommonPrefixes",
    ]
    assert names(child(root, "Upload")) == [
        "Key",
        "UploadId",
        "Initiator",
        "Owner",
        "StorageClass",
        "Initiated",
    ]
    parsed = botocore_parse("ListMultipartUploads", body)
    (upload,) = parsed["Uploads"]
    assert (upload["Key"], upload["UploadId"], upload["Initiated"].timestamp()) == (
        "a b",
        "UP1",
        T0,
    )
    assert parsed["CommonPrefixes"] == [{"Prefix": "dir/"}]


def test_list_multipart_uploads_url_encoding() -> None:
    result = x.ListMultipartUploadsResult(
        "bkt",
        "m +",
        "",
        1,
        True,
        [x.UploadEntry("a b", "U", T0, OWNER)],
        next_key_marker="a b",
        next_upload_id_marker="U",
        encoding_type="url",
    )
    root = tree(x.list_multipart_uploads(result), "ListMultipartUploadsResult")
    assert text(root, "Upload/Key") == "a+b"
    assert text(root, "KeyMarker") == "m+%2B"
    assert text(root, "NextUploadIdMarker") == "U"


# --- request parsing --------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Delete><Object><Key>&lol2;</Key></Object></Delete>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Delete><Object><Key>&x;</Key></Object></Delete>"""
DOCTYPE_ONLY = b'<!DOCTYPE Delete SYSTEM "http://example.com/x.dtd"><Delete><Object><Key>k</Key></Object></Delete>'
PARAMETER_ENTITY = b"""<!DOCTYPE d [<!ENTITY % p SYSTEM "http://example.com/x">%p;]>
<Delete><Object><Key>k</Key></Object></Delete>"""
GARBAGE = [
    b"",
    b"not xml",
    b"<Delete>",
    b"<Delete><Object><Key>k</Key></Object></Delete><Delete/>",
    b"<Delete><Object><Key>k</Object></Delete>",
    b"<a:Delete><Object><Key>k</Key></Object></a:Delete>",
    b"\xff\xfe<\x00",
    b"<Delete><Object><Key>k</Key></Object></Delete>trailing",
]


def malformed(call: Any, *args: Any, code: str = "MalformedXML") -> S3Error:
    with pytest.raises(S3Error) as e:
        call(*args)
    assert e.value.code == code
    return e.value


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL, DOCTYPE_ONLY, PARAMETER_ENTITY])
@pytest.mark.parametrize(
    "parse",
    [
        parse_delete_objects,
        parse_complete_multipart,
        parse_tagging,
        parse_create_bucket_configuration,
    ],
)
def test_dtds_and_entities_are_rejected(body: bytes, parse: Any) -> None:
    malformed(parse, body)


@pytest.mark.parametrize("body", GARBAGE)
def test_garbage_is_malformed(body: bytes) -> None:
    malformed(parse_delete_objects, body)


def test_undefined_entity_is_malformed() -> None:
    malformed(parse_delete_objects, b"<Delete><Object><Key>&nope;</Key></Object></Delete>")


def test_create_bucket_configuration() -> None:
    assert parse_create_bucket_configuration(b"") is None
    assert parse_create_bucket_configuration(b"  \r\n") is None
    for region in ("eu-west-1", "us-east-1"):
        body = botocore_body(
            "CreateBucket",
            {"Bucket": "b", "CreateBucketConfiguration": {"LocationConstraint": region}},
        )
        assert parse_create_bucket_configuration(body) == region
    no_ns = (
        b"<CreateBucketConfiguration><LocationConstraint> ap-south-1 </LocationConstraint>"
        b"</CreateBucketConfiguration>"
    )
    assert parse_create_bucket_configuration(no_ns) == "ap-south-1"
    assert parse_create_bucket_configuration(b"<CreateBucketConfiguration/>") is None
    empty = b"<CreateBucketConfiguration><LocationConstraint/></CreateBucketConfiguration>"
    assert parse_create_bucket_configuration(empty) is None
    malformed(
        parse_create_bucket_configuration,
        b"<Other><LocationConstraint>x</LocationConstraint></Other>",
    )
    malformed(parse_create_bucket_configuration, b"garbage")
    too_big = b"<CreateBucketConfiguration>" + b" " * 70_000 + b"</CreateBucketConfiguration>"
    malformed(parse_create_bucket_configuration, too_big, code="MaxMessageLengthExceeded")


def test_delete_objects_from_botocore() -> None:
    keys = ["a&<b", " spaced ", "dir/", "café 😀", "]]>", "tab\tnl\n"]
    objects = [{"Key": k} for k in keys] + [{"Key": "v", "VersionId": "null"}]
    body = botocore_body(
        "DeleteObjects", {"Bucket": "b", "Delete": {"Objects": objects, "Quiet": True}}
    )
    quiet, parsed = parse_delete_objects(body)
    assert quiet is True
    assert parsed == [(k, None) for k in keys] + [("v", "null")]
    body = botocore_body("DeleteObjects", {"Bucket": "b", "Delete": {"Objects": [{"Key": "k"}]}})
    assert parse_delete_objects(body) == (False, [("k", None)])


def test_delete_objects_without_namespace_and_with_cr() -> None:
    body = b"<Delete><Quiet>FALSE</Quiet><Object><Key>a&#13;b</Key></Object></Delete>"
    assert parse_delete_objects(body) == (False, [("a\rb", None)])
    cdata = b"<Delete><Object><Key><![CDATA[<x>&]]></Key></Object></Delete>"
    assert parse_delete_objects(cdata) == (False, [("<x>&", None)])


def test_delete_objects_limits() -> None:
    def body(n: int) -> bytes:
        return b"<Delete>" + b"<Object><Key>k</Key></Object>" * n + b"</Delete>"

    assert len(parse_delete_objects(body(1000))[1]) == 1000
    malformed(parse_delete_objects, body(1001))
    malformed(parse_delete_objects, body(0))
    malformed(parse_delete_objects, b"x" * (3 << 20), code="MaxMessageLengthExceeded")


@pytest.mark.parametrize(
    "body",
    [
        b"<Delete><Object/></Delete>",
        b"<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>",
        b"<Delete><Object><Key><b>x</b></Key></Object></Delete>",
        b"<Delete><Quiet>maybe</Quiet><Object><Key>a</Key></Object></Delete>",
        b"<Tagging/>",
    ],
)
def test_delete_objects_bad_shapes(body: bytes) -> None:
    malformed(parse_delete_objects, body)


def test_complete_multipart_from_botocore() -> None:
    parts = [
        {"PartNumber": 1, "ETag": '"e1"', "ChecksumCRC32": "AAAAAA=="},
        {"PartNumber": 2, "ETag": "e2"},
        {"PartNumber": 10000, "ETag": '"e3-x"', "ChecksumSHA256": "c2hh"},
    ]
    body = botocore_body(
        "CompleteMultipartUpload",
        {"Bucket": "b", "Key": "k", "UploadId": "u", "MultipartUpload": {"Parts": parts}},
    )
    assert parse_complete_multipart(body) == [
        CompletedPart(1, "e1", {"ChecksumCRC32": "AAAAAA=="}),
        CompletedPart(2, "e2"),
        CompletedPart(10000, "e3-x", {"ChecksumSHA256": "c2hh"}),
    ]


def test_complete_multipart_escaped_quotes_and_whitespace() -> None:
    body = b"""<CompleteMultipartUpload>
      <Part> <PartNumber> 1 </PartNumber> <ETag>&quot;e1&quot;</ETag> </Part>
    </CompleteMultipartUpload>"""
    assert parse_complete_multipart(body) == [CompletedPart(1, "e1")]


def part(number: bytes) -> bytes:
    return b"<Part><PartNumber>" + number + b"</PartNumber><ETag>e</ETag></Part>"


@pytest.mark.parametrize(
    ("parts", "code"),
    [
        ([], "MalformedXML"),
        ([b"x"], "MalformedXML"),
        ([b"-1"], "MalformedXML"),
        ([b"1.0"], "MalformedXML"),
        ([b""], "MalformedXML"),
        ([b"0"], "InvalidArgument"),
        ([b"10001"], "InvalidArgument"),
        ([b"2", b"1"], "InvalidPartOrder"),
        ([b"1", b"2", b"2", b"1"], "InvalidPartOrder"),
    ],
)
def test_complete_multipart_bad_parts(parts: list[bytes], code: str) -> None:
    body = (
        b"<CompleteMultipartUpload>"
        + b"".join(part(p) for p in parts)
        + b"</CompleteMultipartUpload>"
    )
    malformed(parse_complete_multipart, body, code=code)


def test_complete_multipart_repeated_part_later_entry_stands() -> None:
    body = (
        b"<CompleteMultipartUpload>"
        b"<Part><PartNumber>1</PartNumber><ETag>first</ETag></Part>"
        b"<Part><PartNumber>1</PartNumber><ETag>second</ETag></Part>"
        b"<Part><PartNumber>2</PartNumber><ETag>e2</ETag></Part>"
        b"</CompleteMultipartUpload>"
    )
    assert parse_complete_multipart(body) == [CompletedPart(1, "second"), CompletedPart(2, "e2")]


def test_complete_multipart_missing_etag() -> None:
    body = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part>"
    body += b"</CompleteMultipartUpload>"
    malformed(parse_complete_multipart, body)


def test_complete_multipart_too_many_parts() -> None:
    many = b"".join(part(str(i).encode()) for i in range(1, 10_001))
    body = b"<CompleteMultipartUpload>" + many + b"</CompleteMultipartUpload>"
    assert len(parse_complete_multipart(body)) == 10_000
    extra = body.replace(
        b"</CompleteMultipartUpload>", part(b"10000") + b"</CompleteMultipartUpload>"
    )
    malformed(parse_complete_multipart, extra)


def test_tagging_from_botocore() -> None:
    tags = [
        {"Key": "a b", "Value": "c&d"},
        {"Key": "empty", "Value": ""},
        {"Key": "ü", "Value": " v "},
    ]
    body = botocore_body(
        "PutObjectTagging", {"Bucket": "b", "Key": "k", "Tagging": {"TagSet": tags}}
    )
    assert parse_tagging(body) == [("a b", "c&d"), ("empty", ""), ("ü", " v ")]
    empty = botocore_body("PutBucketTagging", {"Bucket": "b", "Tagging": {"TagSet": []}})
    assert parse_tagging(empty) == []


def tagging_body(tags: list[tuple[str, str]]) -> bytes:
    inner = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in tags)
    return f"<Tagging><TagSet>{inner}</TagSet></Tagging>".encode()


def test_tagging_limits() -> None:
    ten = [(f"k{i}", "v") for i in range(10)]
    assert len(parse_tagging(tagging_body(ten))) == 10
    malformed(parse_tagging, tagging_body([*ten, ("k10", "v")]), code="InvalidTag")
    fifty = [(f"k{i}", "v") for i in range(MAX_BUCKET_TAGS)]
    assert len(parse_tagging(tagging_body(fifty), max_tags=MAX_BUCKET_TAGS)) == 50
    malformed(parse_tagging, tagging_body([("a", "1"), ("a", "2")]), code="InvalidTag")
    malformed(parse_tagging, tagging_body([("", "1")]), code="InvalidTag")
    malformed(parse_tagging, tagging_body([("k" * 129, "1")]), code="InvalidTag")
    malformed(parse_tagging, tagging_body([("k", "v" * 257)]), code="InvalidTag")
    malformed(parse_tagging, tagging_body([("aws:x", "1")]), code="InvalidTag")
    assert parse_tagging(tagging_body([("k" * 128, "v" * 256)])) == [("k" * 128, "v" * 256)]


@pytest.mark.parametrize(
    "body",
    [
        b"<Tagging/>",
        b"<Tagging><TagSet/><TagSet/></Tagging>",
        b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>",
        b"<TagSet><Tag><Key>k</Key></Tag></TagSet>",
    ],
)
def test_tagging_bad_shapes(body: bytes) -> None:
    malformed(parse_tagging, body)


def test_response_documents_parse_as_requests() -> None:
    """What we render for GetObjectTagging is what PutObjectTagging accepts."""
    tags = [("a&b", "<v>"), ("k", "")]
    assert parse_tagging(x.tagging(tags)) == tags
