"""Microbenchmarks of SigV4 verification (run: pytest bench/test_bench_sigv4.py)."""

from __future__ import annotations

import calendar
import hashlib
from datetime import datetime
from typing import Any
from unittest.mock import patch
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from stratum.auth import RequestView, authenticate
from stratum.auth.streaming import chunk_signature, verify_chunk_signature

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
WHEN = datetime(2024, 5, 17, 12, 34, 56)
NOW = float(calendar.timegm(WHEN.timetuple()))
LOOKUP = {ACCESS_KEY: SECRET}.get


def _view(signer: Any, method: str, url: str, headers: dict[str, str]) -> RequestView:
    req = AWSRequest(method=method, url=url, headers=headers)
    with patch("botocore.auth.get_current_datetime", return_value=WHEN):
        signer.add_auth(req)
    split = urlsplit(req.url)
    pairs = [*req.headers.items(), ("Host", split.netloc)]
    pairs += [("User-Agent", "Boto3/1.34"), ("Accept-Encoding", "identity")]
    query = parse_qsl(split.query, keep_blank_values=True)
    return RequestView.from_wire(method, split.path, query, pairs)


def test_bench_verify_header_signed_get(benchmark: Any) -> None:
    signer = S3SigV4Auth(Credentials(ACCESS_KEY, SECRET), "s3", "us-east-1")
    view = _view(signer, "GET", "http://localhost:9000/photos/2024/img%20001.jpg", {})
    result = benchmark(authenticate, view, LOOKUP, region="us-east-1", now=NOW)
    assert result.access_key == ACCESS_KEY


def test_bench_verify_header_signed_list_with_query(benchmark: Any) -> None:
    signer = S3SigV4Auth(Credentials(ACCESS_KEY, SECRET), "s3", "us-east-1")
    url = "http://localhost:9000/photos?list-type=2&prefix=2024%2F05%2F&delimiter=%2F&max-keys=1000"
    view = _view(signer, "GET", url, {})
    result = benchmark(authenticate, view, LOOKUP, region="us-east-1", now=NOW)
    assert result.access_key == ACCESS_KEY


def test_bench_verify_presigned_get(benchmark: Any) -> None:
    signer = S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET), "s3", "us-east-1", expires=3600)
    view = _view(signer, "GET", "http://localhost:9000/photos/img.jpg", {})
    result = benchmark(authenticate, view, LOOKUP, region="us-east-1", now=NOW)
    assert result.presigned


class _StreamingAuth(S3SigV4Auth):  # type: ignore[misc]
    def payload(self, request: AWSRequest) -> str:
        return "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


def test_bench_chunk_signature(benchmark: Any) -> None:
    """Per-chunk cost on top of hashing the data (the digest is precomputed here)."""
    signer = _StreamingAuth(Credentials(ACCESS_KEY, SECRET), "s3", "us-east-1")
    view = _view(signer, "PUT", "http://localhost:9000/b/k", {})
    result = authenticate(view, LOOKUP, region="us-east-1", now=NOW)
    context = None if result is None else result.chunk_context
    assert context is not None
    digest = hashlib.sha256(b"a" * 65536).hexdigest()
    claimed = chunk_signature(context, context.seed_signature, digest)
    benchmark(verify_chunk_signature, context, context.seed_signature, digest, claimed)
