"""Names with control characters: in the log they stay on their line; in listings, exact.

A log line quotes the request's path, and a path is whatever the client sends: an anonymous
``GET /x%0A<a line of its own>`` must not add a line to the log, in either log format. Keys
with NUL or other control characters are stored as they are; a listing returns them exactly
with ``encoding-type=url`` (what boto3 asks for by itself), and as AWS writes them without
it: ``&#x1;``-style references, which botocore's parser refuses, as it refuses AWS's.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from botocore.exceptions import ClientError
from botocore.handlers import set_list_objects_encoding_type_url
from botocore.parsers import ResponseParserError

from tests.server.conftest import RunningServer, start_server
from tests.server.faultload import stop_cleanly, wait_for_log

FORGED = "2031-01-01 00:00:00,000 INFO stratum.access: GET GetObject /forged 200"
CONTROL_KEYS = ["a\x01b", "nul\x00x", "lf\nx", "esc\x1b[31m", "cr\rx", "tab\tx", "del\x7f"]


def _get(server: RunningServer, raw_path: str) -> int:
    url = urlsplit(server.endpoint)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        connection.request("GET", raw_path)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture(scope="module", params=["text", "json"])
def logged(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, RunningServer]]:
    tmp = tmp_path_factory.mktemp(f"log-{request.param}")
    config = tmp / "stratum.toml"
    config.write_text(
        f'[server]\nlog_format = "{request.param}"\n[storage]\ndata_dir = "{tmp / "data"}"\n'
    )
    server = start_server(tmp / "data", config=config)
    yield request.param, server
    stop_cleanly(server)


def test_a_path_cannot_add_a_line_to_the_log(logged: tuple[str, RunningServer]) -> None:
    log_format, server = logged
    # (not a valid bucket name: 400, as any path would be answered)
    assert _get(server, "/x" + quote("\n" + FORGED + "\r\n" + FORGED)) == 400
    wait_for_log(server, "/x", 1)
    lines = list(server.output)
    assert not any(line.startswith(FORGED) for line in lines), lines
    (line,) = [line for line in lines if "/forged" in line]
    if log_format == "json":
        record = json.loads(line)
        assert record["msg"].startswith(f"GET - /x\n{FORGED}\r\n{FORGED} 400 ")
        assert record["status"] == 400
    else:
        assert f" GET - /x\\n{FORGED}\\r\\n{FORGED} 400 " in line


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Any]]:
    server = start_server(tmp_path_factory.mktemp("keys"))
    s3 = server.client()
    s3.create_bucket(Bucket="ctl")
    for key in CONTROL_KEYS:
        s3.put_object(Bucket="ctl", Key=key, Body=key.encode())
    yield server, s3
    stop_cleanly(server)


def test_boto3_lists_control_characters_exactly(listed: tuple[RunningServer, Any]) -> None:
    _, s3 = listed
    expected = sorted(CONTROL_KEYS, key=str.encode)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="ctl")["Contents"]] == expected
    assert [o["Key"] for o in s3.list_objects(Bucket="ctl")["Contents"]] == expected
    assert [v["Key"] for v in s3.list_object_versions(Bucket="ctl")["Versions"]] == expected
    for key in CONTROL_KEYS:
        assert s3.get_object(Bucket="ctl", Key=key)["Body"].read() == key.encode()


def test_a_plain_listing_writes_them_as_aws_does(listed: tuple[RunningServer, Any]) -> None:
    server, _ = listed
    plain = server.client()
    for operation in ("ListObjects", "ListObjectsV2"):
        plain.meta.events.unregister(
            f"before-parameter-build.s3.{operation}", set_list_objects_encoding_type_url
        )
    bodies: list[bytes] = []
    plain.meta.events.register(
        "before-parse.s3.*", lambda response_dict, **_: bodies.append(response_dict["body"])
    )
    # botocore's parser refuses the document (as it refuses AWS's): recent versions report it
    # as a server error once their retries found the same.
    with pytest.raises((ResponseParserError, ClientError)):
        plain.list_objects_v2(Bucket="ctl")
    body = bodies[-1]
    assert b"EncodingType" not in body
    for written in (b"a&#x1;b", b"nul&#x0;x", b"lf\nx", b"esc&#x1b;[31m", b"cr&#13;x"):
        assert b"<Key>" + written + b"</Key>" in body
    assert b"\xef\xbf\xbd" not in body  # nothing replaced
