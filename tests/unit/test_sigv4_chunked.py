"""aws-chunked signatures: AWS's published STREAMING-AWS4-HMAC-SHA256-PAYLOAD example, and
the signed-trailer continuation of it that AWS's common runtime tests against."""

from __future__ import annotations

import calendar
import hashlib

import pytest

from stratum.auth import AuthError, ChunkSigningContext, RequestView, authenticate
from stratum.auth.request import EMPTY_SHA256
from stratum.auth.sigv4 import signing_key
from stratum.auth.streaming import (
    ChunkSignatureChain,
    canonical_trailer,
    chunk_signature,
    chunk_string_to_sign,
    trailer_string_to_sign,
    verify_chunk_signature,
    verify_trailer_signature,
)
from stratum.s3.errors import as_s3_error

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AMZ_DATE = "20130524T000000Z"
SCOPE = "20130524/us-east-1/s3/aws4_request"
NOW = float(calendar.timegm((2013, 5, 24, 0, 0, 0)))

SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK_1 = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
CHUNK_2 = "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
FINAL = "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
# AWS's CRT continues the example with trailing headers first:1st, second:2nd, third:3rd.
TRAILER = "df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c"

DATA_1 = hashlib.sha256(b"a" * 65536).hexdigest()
DATA_2 = hashlib.sha256(b"a" * 1024).hexdigest()
EMPTY = EMPTY_SHA256
TRAILERS = [("first", "1st"), ("second", "2nd"), ("third", "3rd")]


def example_request() -> RequestView:
    """The PUT of AWS's "Transferring Payload in Multiple Chunks" example."""
    return RequestView(
        "PUT",
        "/examplebucket/chunkObject.txt",
        [],
        {
            "host": "s3.amazonaws.com",
            "x-amz-date": AMZ_DATE,
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/"
            "us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;"
            "x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,"
            f"Signature={SEED}",
            "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": "66560",
            "content-length": "66824",
        },
    )


def answered(error: AuthError) -> tuple[str, int]:
    """The code and status a client gets for ``error``."""
    s3 = as_s3_error(error)
    return s3.code, s3.status


@pytest.fixture
def context() -> ChunkSigningContext:
    result = authenticate(
        example_request(), {"AKIAIOSFODNN7EXAMPLE": SECRET}.get, region="us-east-1", now=NOW
    )
    assert result is not None and result.chunk_context is not None
    return result.chunk_context


def test_verify_returns_the_examples_seed(context: ChunkSigningContext) -> None:
    assert context == ChunkSigningContext(
        SEED, signing_key(SECRET, "20130524", "us-east-1"), SCOPE, AMZ_DATE, trailer=False
    )


def test_chunk_string_to_sign_of_the_example() -> None:
    assert chunk_string_to_sign(AMZ_DATE, SCOPE, SEED, DATA_1) == (
        "AWS4-HMAC-SHA256-PAYLOAD\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
        f"{SEED}\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "bf718b6f653bebc184e1479f1935b8da974d701b893afcf49e701f3e2f9f9c5a"
    )


def test_chunk_signatures_of_the_example(context: ChunkSigningContext) -> None:
    assert chunk_signature(context, SEED, DATA_1) == CHUNK_1
    assert verify_chunk_signature(context, SEED, DATA_1, CHUNK_1) == CHUNK_1
    assert verify_chunk_signature(context, CHUNK_1, DATA_2, CHUNK_2) == CHUNK_2
    assert verify_chunk_signature(context, CHUNK_2, EMPTY, FINAL) == FINAL


def test_signed_trailer_of_the_example(context: ChunkSigningContext) -> None:
    trailer = canonical_trailer([*TRAILERS, ("x-amz-trailer-signature", TRAILER)])
    assert trailer == b"first:1st\nsecond:2nd\nthird:3rd\n"
    digest = hashlib.sha256(trailer).hexdigest()
    assert trailer_string_to_sign(AMZ_DATE, SCOPE, FINAL, digest) == (
        f"AWS4-HMAC-SHA256-TRAILER\n{AMZ_DATE}\n{SCOPE}\n{FINAL}\n{digest}"
    )
    verify_trailer_signature(context, FINAL, digest, TRAILER)
    with pytest.raises(AuthError) as info:
        verify_trailer_signature(context, CHUNK_2, digest, TRAILER)
    assert answered(info.value) == ("SignatureDoesNotMatch", 403)


def test_chain_accepts_the_example(context: ChunkSigningContext) -> None:
    chain = ChunkSignatureChain(context)
    chain.verify_chunk(DATA_1, CHUNK_1)
    chain.verify_chunk(DATA_2, CHUNK_2)
    chain.verify_chunk(EMPTY, FINAL)
    assert chain.previous_signature == FINAL
    chain.verify_trailer(hashlib.sha256(canonical_trailer(TRAILERS)).hexdigest(), TRAILER)


@pytest.mark.parametrize(
    "steps",
    [
        [(DATA_2, CHUNK_1)],  # data altered
        [(DATA_1, CHUNK_2)],  # signature of another chunk
        [(DATA_2, CHUNK_2)],  # first chunk dropped: the chain breaks
        [(DATA_1, CHUNK_1), (EMPTY, FINAL)],  # second chunk dropped
        [(DATA_1, CHUNK_1.upper())],
        [(DATA_1, "")],
        [(DATA_1, "é" * 64)],
    ],
)
def test_chain_refuses_tampering(
    context: ChunkSigningContext, steps: list[tuple[str, str]]
) -> None:
    chain = ChunkSignatureChain(context)
    with pytest.raises(AuthError) as info:
        for digest, signature in steps:
            chain.verify_chunk(digest, signature)
    assert answered(info.value) == ("SignatureDoesNotMatch", 403)


def test_chain_order_rules(context: ChunkSigningContext) -> None:
    chain = ChunkSignatureChain(context)
    chain.verify_chunk(DATA_1, CHUNK_1)
    with pytest.raises(AuthError):
        chain.verify_trailer(EMPTY, TRAILER)  # before the final chunk
    chain.verify_chunk(DATA_2, CHUNK_2)
    chain.verify_chunk(EMPTY, FINAL)
    with pytest.raises(AuthError):
        chain.verify_chunk(DATA_1, CHUNK_1)  # after the final chunk


def test_tampered_seed_request_is_refused() -> None:
    view = example_request()
    headers = {**view.headers, "x-amz-decoded-content-length": "66561"}
    with pytest.raises(AuthError) as info:
        authenticate(
            RequestView(view.method, view.raw_path, view.query, headers),
            {"AKIAIOSFODNN7EXAMPLE": SECRET}.get,
            region="us-east-1",
            now=NOW,
        )
    assert info.value.code == "SignatureDoesNotMatch"
