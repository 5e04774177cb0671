"""Wire-level behaviour and the error format, checked on raw sockets and with boto3.

Every error is S3 XML (``Error`` with Code, Message, Resource, RequestId equal to the
``x-amz-request-id`` header); uploads the server refuses are refused before their body is
sent (``Expect: 100-continue``) or without waiting for it (``EntityTooLarge``).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.server.conftest import RunningServer, start_server

UNSIGNED = "UNSIGNED-PAYLOAD"


def sign(
    server: RunningServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    payload_hash: str | None = None,
) -> dict[str, str]:
    """Headers of a SigV4-signed request (botocore's signer); ``payload_hash`` overrides
    the body's SHA-256 (``UNSIGNED-PAYLOAD``, or a lie)."""
    url = server.endpoint + path
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))

    class Signer(S3SigV4Auth):
        def payload(self, request: Any) -> str:
            return payload_hash or super().payload(request)

    Signer(Credentials(server.access_key, server.secret_key), "s3", "us-east-1").add_auth(request)
    return dict(request.headers)


def request_head(server: RunningServer, method: str, path: str, headers: dict[str, str]) -> bytes:
    netloc = urlsplit(server.endpoint).netloc
    lines = [f"{method} {path} HTTP/1.1", f"Host: {netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(server: RunningServer, timeout: float = 5.0) -> socket.socket:
    parts = urlsplit(server.endpoint)
    assert parts.hostname is not None and parts.port is not None
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response (status, lower-cased headers, body) read off a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def send(
    server: RunningServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    """One request through http.client, which sends the path exactly as given."""
    parts = urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def error_code(body: bytes) -> str | None:
    return ET.fromstring(body).findtext("Code")


# --- Expect: 100-continue ------------------------------------------------------------------


def test_expect_100_continue_arrives_before_the_body(
    server: RunningServer, s3: Any, bucket: str
) -> None:
    body = b"sent after the go-ahead" * 1000
    path = f"/{bucket}/expect"
    headers = sign(server, "PUT", path, {"Expect": "100-continue"}, body)
    headers["Content-Length"] = str(len(body))
    with connect(server) as sock:
        sock.sendall(request_head(server, "PUT", path, headers))
        interim = sock.recv(1024)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        status, response_headers, _ = read_response(sock)
    assert status == 200
    assert response_headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert s3.get_object(Bucket=bucket, Key="expect")["Body"].read() == body


@pytest.mark.parametrize(
    ("path", "code", "status"),
    [
        ("/no-such-bucket-expect/key", "NoSuchBucket", 404),
        ("/{bucket}/" + "k" * 1025, "KeyTooLongError", 400),
    ],
)
def test_expect_100_continue_refused_without_interim_response(
    server: RunningServer, bucket: str, path: str, code: str, status: int
) -> None:
    path = path.format(bucket=bucket)
    headers = sign(server, "PUT", path, {"Expect": "100-continue"}, payload_hash=UNSIGNED)
    headers["Content-Length"] = str(10 * 1024 * 1024)
    with connect(server) as sock:
        sock.sendall(request_head(server, "PUT", path, headers))
        got_status, _, body = read_response(sock)
    assert got_status == status
    assert error_code(body) == code


def test_expect_100_continue_bad_signature_refused_first(
    server: RunningServer, bucket: str
) -> None:
    path = f"/{bucket}/unsigned"
    headers = sign(server, "PUT", path, {"Expect": "100-continue"}, payload_hash=UNSIGNED)
    headers["Authorization"] = headers["Authorization"][:-4] + "0000"
    headers["Content-Length"] = "1000000"
    with connect(server) as sock:
        sock.sendall(request_head(server, "PUT", path, headers))
        status, _, body = read_response(sock)
    assert status == 403
    assert error_code(body) == "SignatureDoesNotMatch"


@pytest.mark.parametrize("query", ["?website", ""])
def test_error_before_the_body_closes_a_keep_alive_connection(
    server: RunningServer, bucket: str, query: str
) -> None:
    # A 501 (an operation Stratum lacks) or 404 to a PUT whose client waits for 100 Continue:
    # the body never came, so the connection must end with the answer; were it kept, the
    # body the client may still send would be read as its next request.
    target = f"/{bucket}{query}" if query else "/no-such-bucket-keepalive/k"
    headers = sign(server, "PUT", target, {"Expect": "100-continue"}, payload_hash=UNSIGNED)
    headers["Content-Length"] = "3"
    with connect(server) as sock:
        sock.sendall(request_head(server, "PUT", target, headers))
        status, response_headers, body = read_response(sock)
        assert status in (404, 501)
        assert error_code(body) in ("NoSuchBucket", "NotImplemented")
        assert response_headers["connection"] == "close"
        assert sock.recv(1024) == b""


def test_boto3_retries_on_a_new_connection_after_an_error_before_the_body(
    s3: Any, bucket: str
) -> None:
    with pytest.raises(Exception, match="NoSuchBucket"):
        s3.put_object(Bucket=f"{bucket}-but-missing", Key="k", Body=b"x" * (2 << 20))
    s3.put_object(Bucket=bucket, Key="after-refusal", Body=b"bar")
    assert s3.get_object(Bucket=bucket, Key="after-refusal")["Body"].read() == b"bar"


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_http_is_answered_in_s3_xml_without_a_traceback(
    tmp_path: Path, raw: bytes
) -> None:
    config = tmp_path / "stratum.toml"
    config.write_text(f'[server]\nworkers = 1\n[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    server = start_server(tmp_path / "data", config=config)
    try:
        with connect(server) as sock:
            sock.sendall(raw)
            status, headers, body = read_response(sock)
            assert sock.recv(1024) == b""  # the connection ends with the answer
        assert status == 400
        assert error_code(body) == "InvalidRequest"
        assert headers["x-amz-request-id"] == ET.fromstring(body).findtext("RequestId")
    finally:
        assert server.stop() == 0
    output = "".join(server.output)
    assert "malformed request from" in output
    assert "Traceback" not in output


def test_boto3_large_put_uses_expect_and_succeeds(s3: Any, bucket: str) -> None:
    # botocore sends Expect: 100-continue for bodies over 1 MB
    data = bytes(range(256)) * 8192  # 2 MiB
    sent: list[str] = []
    s3.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: sent.append(str(request.headers.get("Expect", b""), "ascii")),
    )
    s3.put_object(Bucket=bucket, Key="expect-boto", Body=data)
    assert sent == ["100-continue"]
    assert s3.get_object(Bucket=bucket, Key="expect-boto")["Body"].read() == data


# --- sizes and lengths ---------------------------------------------------------------------


def test_entity_too_large_is_answered_without_the_body(
    server: RunningServer, s3: Any, bucket: str
) -> None:
    path = f"/{bucket}/huge"
    headers = sign(server, "PUT", path, payload_hash=UNSIGNED)
    headers["Content-Length"] = str(5 * 1024**3 + 1)
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(request_head(server, "PUT", path, headers))
        status, response_headers, body = read_response(sock)
    assert time.monotonic() - started < 5
    assert status == 400
    root = ET.fromstring(body)
    assert root.findtext("Code") == "EntityTooLarge"
    assert root.findtext("ProposedSize") == str(5 * 1024**3 + 1)
    assert root.findtext("MaxSizeAllowed") == str(5 * 1024**3)
    assert response_headers.get("connection", "").lower() == "close"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_five_gib_exactly_is_accepted_for_upload(server: RunningServer, bucket: str) -> None:
    """At the limit the server waits for the body instead of refusing it."""
    path = f"/{bucket}/limit"
    headers = sign(server, "PUT", path, payload_hash=UNSIGNED)
    headers["Content-Length"] = str(5 * 1024**3)
    with connect(server, timeout=0.5) as sock:
        sock.sendall(request_head(server, "PUT", path, headers) + b"x" * 1000)
        with pytest.raises(TimeoutError):
            sock.recv(1024)


def test_missing_content_length(server: RunningServer, s3: Any, bucket: str) -> None:
    path = f"/{bucket}/nolength"
    headers = sign(server, "PUT", path, payload_hash=UNSIGNED)
    headers.pop("Content-Length", None)
    with connect(server) as sock:
        sock.sendall(request_head(server, "PUT", path, headers))
        status, response_headers, body = read_response(sock)
    assert status == 411
    assert error_code(body) == "MissingContentLength"
    assert response_headers["x-amz-request-id"] == ET.fromstring(body).findtext("RequestId")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_http_chunked_put_without_content_length(
    server: RunningServer, s3: Any, bucket: str
) -> None:
    path = f"/{bucket}/chunked"
    headers = sign(server, "PUT", path, payload_hash=UNSIGNED)
    headers.pop("Content-Length", None)
    headers["Transfer-Encoding"] = "chunked"
    with connect(server) as sock:
        sock.sendall(request_head(server, "PUT", path, headers))
        sock.sendall(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        status, _, _ = read_response(sock)
    assert status == 200
    assert s3.get_object(Bucket=bucket, Key="chunked")["Body"].read() == b"hello world"


def test_incomplete_body_stores_nothing(server: RunningServer, s3: Any, bucket: str) -> None:
    path = f"/{bucket}/short"
    headers = sign(server, "PUT", path, payload_hash=UNSIGNED)
    headers["Content-Length"] = "1000"
    with connect(server) as sock:
        sock.sendall(request_head(server, "PUT", path, headers) + b"only this much")
        sock.shutdown(socket.SHUT_WR)
        try:
            sock.recv(1024)
        except OSError:
            pass
    time.sleep(0.2)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_document_body_arriving_in_pieces(server: RunningServer, s3: Any, bucket: str) -> None:
    """DeleteObjects' XML read to its end even when it comes in several TCP segments."""
    keys = [f"piece-{i:04d}" for i in range(300)]
    for key in keys[:3]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    document = (
        "<Delete>" + "".join(f"<Object><Key>{k}</Key></Object>" for k in keys) + "</Delete>"
    ).encode()
    path = f"/{bucket}?delete"
    headers = sign(server, "POST", path, body=document)
    headers["Content-Length"] = str(len(document))
    with connect(server) as sock:
        sock.sendall(request_head(server, "POST", path, headers) + document[:100])
        time.sleep(0.2)
        sock.sendall(document[100:5000])
        time.sleep(0.2)
        sock.sendall(document[5000:])
        status, _, body = read_response(sock)
    assert status == 200, body
    assert len(ET.fromstring(body)) == len(keys)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


# --- unsupported requests ------------------------------------------------------------------


def test_iam_style_action_is_refused_fast(server: RunningServer) -> None:
    body = b"Action=ListUsers&Version=2010-05-08"
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    signed = sign(server, "POST", "/", headers, body)
    started = time.monotonic()
    status, headers, data = send(server, "POST", "/", signed, body)
    assert time.monotonic() - started < 2
    assert 400 <= status < 500
    root = ET.fromstring(data)
    assert root.findtext("Code") == "InvalidRequest"
    assert root.findtext("RequestId") == headers["x-amz-request-id"]
    # the same with the action in the query string, even unsigned
    status, _, data = send(server, "GET", "/?Action=GetCallerIdentity")
    assert 400 <= status < 500
    assert error_code(data) == "InvalidRequest"


@pytest.mark.parametrize(
    ("method", "query"),
    [
        ("GET", "inventory"),
        ("GET", "analytics"),
        ("GET", "metrics"),
        ("PUT", "intelligent-tiering"),
        ("GET", "acl&tagging"),
        ("PUT", "website"),
    ],
)
def test_unknown_or_unimplemented_subresource_is_not_implemented(
    server: RunningServer, bucket: str, method: str, query: str
) -> None:
    path = f"/{bucket}?{query}"
    status, headers, data = send(server, method, path, sign(server, method, path))
    assert status == 501
    root = ET.fromstring(data)
    assert root.findtext("Code") == "NotImplemented"
    assert root.findtext("RequestId") == headers["x-amz-request-id"]
    assert root.findtext("Resource") == f"/{bucket}"


def test_post_to_an_object_without_subresource(server: RunningServer, bucket: str) -> None:
    path = f"/{bucket}/key"
    status, _, data = send(server, "POST", path, sign(server, "POST", path))
    assert status in (405, 501)
    assert error_code(data) in ("MethodNotAllowed", "NotImplemented")


# --- the error format ----------------------------------------------------------------------


ERROR_CASES = [
    ("GET", "/no-such-bucket-errors", {}, 404, "NoSuchBucket", "/no-such-bucket-errors"),
    ("GET", "/{bucket}/missing key", {}, 404, "NoSuchKey", "/{bucket}/missing key"),
    ("PUT", "/Invalid_Bucket", {}, 400, "InvalidBucketName", "/Invalid_Bucket"),
    ("GET", "/{bucket}/r", {"Range": "bytes=100-"}, 416, "InvalidRange", "/{bucket}/r"),
    ("GET", "/{bucket}?max-keys=x", {}, 400, "InvalidArgument", "/{bucket}"),
    ("DELETE", "/{bucket}", {}, 409, "BucketNotEmpty", "/{bucket}"),
    ("GET", "/{bucket}/r?uploadId=nope", {}, 404, "NoSuchUpload", "/{bucket}/r"),
    ("GET", "/{bucket}?cors", {}, 404, "NoSuchCORSConfiguration", "/{bucket}"),
    ("GET", "/{bucket}/bad%ZZescape", {}, 400, "InvalidURI", None),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "code", "resource"),
    ERROR_CASES,
    ids=[case[4] for case in ERROR_CASES],
)
def test_error_bodies_are_complete_s3_xml(
    server: RunningServer,
    s3: Any,
    bucket: str,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    code: str,
    resource: str | None,
) -> None:
    s3.put_object(Bucket=bucket, Key="r", Body=b"tiny")
    path = path.format(bucket=bucket)
    wire_path = path.replace(" ", "%20")
    signed = sign(server, method, wire_path, headers)
    got_status, got_headers, data = send(server, method, wire_path, signed)
    assert got_status == status, data
    assert got_headers["content-type"] == "application/xml"
    root = ET.fromstring(data)
    assert root.tag == "Error"
    assert root.findtext("Code") == code
    assert root.findtext("Message")
    request_id = got_headers["x-amz-request-id"]
    assert request_id
    assert root.findtext("RequestId") == request_id
    assert got_headers["x-amz-id-2"]
    assert root.find("HostId") is not None
    if resource is not None:
        assert root.findtext("Resource") == resource.format(bucket=bucket)
    else:
        assert root.findtext("Resource")


def test_request_ids_are_unique(server: RunningServer) -> None:
    ids = {send(server, "GET", "/")[1]["x-amz-request-id"] for _ in range(20)}
    assert len(ids) == 20


def test_successful_responses_carry_a_request_id(s3: Any, bucket: str) -> None:
    for response in (s3.list_buckets(), s3.head_bucket(Bucket=bucket)):
        assert response["ResponseMetadata"]["RequestId"]
        assert response["ResponseMetadata"]["HTTPHeaders"]["x-amz-id-2"]


def test_gzip_content_encoding_is_stored_not_inflated(s3: Any, bucket: str) -> None:
    packed = gzip.compress(b"compressed payload " * 100)
    s3.put_object(Bucket=bucket, Key="gz", Body=packed, ContentEncoding="gzip")
    got = s3.get_object(Bucket=bucket, Key="gz")
    assert got["ContentEncoding"] == "gzip"
    assert got["ContentLength"] == len(packed)
    assert got["Body"].read() == packed
    # a body that merely claims to be gzip is stored too (S3 does not look inside)
    s3.put_object(Bucket=bucket, Key="fake-gz", Body=b"plain", ContentEncoding="gzip")
    assert s3.get_object(Bucket=bucket, Key="fake-gz")["Body"].read() == b"plain"
