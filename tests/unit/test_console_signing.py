"""The console signs its S3 requests as any SDK would: the server's verifier accepts them,
and a presigned URL is byte for byte the one botocore makes."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from stratum import auth
from stratum.auth.checks import format_amz_date
from stratum.auth.errors import AuthError
from stratum.console.signing import Credentials, object_path, presigned_url, signed_headers

CREDS = Credentials("AKIDCONSOLE", "console-secret-key-0001")
NOW = 1_780_000_000.0
REGION = "us-east-1"


def secrets(access_key: str) -> str | None:
    return CREDS.secret_key if access_key == CREDS.access_key else None


def verify(method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> str:
    view = auth.RequestView.from_wire(method, path, query, headers.items())
    result = auth.authenticate(view, secrets, region=REGION, now=NOW + 5)
    assert result is not None
    return result.access_key


keys = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(key=keys, prefix=keys)
def test_signed_headers_pass_the_servers_verification(key: str, prefix: str) -> None:
    path = object_path("bucket", key)
    query = [("list-type", "2"), ("prefix", prefix)]
    headers = signed_headers(
        CREDS,
        "GET",
        "127.0.0.1:9000",
        path,
        query,
        region=REGION,
        now=NOW,
        headers={"content-type": "text/plain"},
    )
    assert verify("GET", path, query, headers) == CREDS.access_key


def test_a_changed_header_or_wrong_secret_is_refused() -> None:
    path = object_path("bucket", "a b/c")
    headers = signed_headers(CREDS, "PUT", "h:1", path, [], region=REGION, now=NOW)
    with pytest.raises(AuthError):
        verify("PUT", path, [], {**headers, "host": "h:2"})
    wrong = Credentials(CREDS.access_key, "not-the-secret")
    headers = signed_headers(wrong, "PUT", "h:1", path, [], region=REGION, now=NOW)
    with pytest.raises(AuthError):
        verify("PUT", path, [], headers)


def botocore_presigned(base: str, path: str) -> str:
    request = AWSRequest(method="GET", url=f"{base}{path}")
    creds = BotoCredentials(CREDS.access_key, CREDS.secret_key)
    S3SigV4QueryAuth(creds, "s3", REGION, expires=3600).add_auth(request)
    return str(request.url)


@pytest.mark.parametrize("key", ["photo.jpg", "dir/with space/ünï+çødé&=?.txt", "a//b"])
def test_presigned_url_matches_botocore(key: str) -> None:
    base, host = "http://192.168.1.20:9000", "192.168.1.20:9000"
    path = object_path("photos", key)
    for _ in range(5):  # botocore reads the clock itself: both must sign in the same second
        now = float(int(time.time()))
        ours = presigned_url(CREDS, "GET", base, host, path, region=REGION, now=now, expires=3600)
        theirs = botocore_presigned(base, path)
        if dict(parse_qsl(urlsplit(theirs).query))["X-Amz-Date"] == format_amz_date(now):
            break
    assert sorted(parse_qsl(urlsplit(ours).query)) == sorted(parse_qsl(urlsplit(theirs).query))
    assert urlsplit(ours).path == urlsplit(theirs).path
    query = parse_qsl(urlsplit(ours).query, keep_blank_values=True)
    view = auth.RequestView.from_wire("GET", urlsplit(ours).path, query, [("host", host)])
    result = auth.authenticate(view, secrets, region=REGION, now=now + 5)
    assert result is not None and result.access_key == CREDS.access_key


def test_link_expiry_is_bounded() -> None:
    for expires in (0, 7 * 86400 + 1):
        with pytest.raises(ValueError):
            presigned_url(
                CREDS, "GET", "http://h", "h", "/b/k", region=REGION, now=NOW, expires=expires
            )
