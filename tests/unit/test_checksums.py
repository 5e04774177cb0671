"""Flexible checksums: published check values, botocore's and awscrt's outputs, AWS's error
messages, and the multipart COMPOSITE / FULL_OBJECT forms."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import subprocess
import sys
import zlib

import crc32c
import pytest
from botocore.httpchecksum import Crc32Checksum, Sha1Checksum, Sha256Checksum
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from stratum.s3 import checksums
from stratum.s3.checksums import (
    ALGORITHMS,
    DIGEST_SIZES,
    Algorithm,
    Checksummer,
    ChecksumRequest,
    checksum_of,
    checksum_request,
    composite_checksum,
    crc_combine,
    decode_checksum,
    full_object_checksum,
    multipart_checksum_type,
    requested_checksums,
    trailer_checksum,
)
from stratum.s3.errors import S3Error

CRCS: tuple[Algorithm, ...] = ("crc32", "crc32c", "crc64nvme")
CHECK_INPUT = b"123456789"
# The catalogued "check" value of each CRC (CRC-64/NVME's is also AWS's test vector).
CHECK_VALUES = {"crc32": 0xCBF43926, "crc32c": 0xE3069283, "crc64nvme": 0xAE8B14860A799888}
# Computed with awscrt 0.38.1's awscrt.checksums.crc64nvme.
AWSCRT_CRC64NVME = [
    (b"", "AAAAAAAAAAA="),
    (b"a", "jC+ERbTL/Dw="),
    (bytes(range(256)) * 3 + b"stratum", "PelXLa8jmQ4="),
    (b"\x00" * 1000, "BNG7j6Y8tIg="),
]
GOOD = {
    "crc32": checksum_of("crc32", b"body"),
    "crc32c": checksum_of("crc32c", b"body"),
    "crc64nvme": checksum_of("crc64nvme", b"body"),
    "sha1": checksum_of("sha1", b"body"),
    "sha256": checksum_of("sha256", b"body"),
}
PURE = {"crc32": checksums._CRC32, "crc32c": checksums._CRC32C, "crc64nvme": checksums._CRC64NVME}


def b64(value: int, size: int) -> str:
    return base64.b64encode(value.to_bytes(size, "big")).decode()


def error_of(info: pytest.ExceptionInfo[S3Error]) -> tuple[str, str]:
    return info.value.code, info.value.text


# --- Values -----------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", CRCS)
def test_crc_check_values(algorithm: Algorithm) -> None:
    expected = b64(CHECK_VALUES[algorithm], DIGEST_SIZES[algorithm])
    assert checksum_of(algorithm, CHECK_INPUT) == expected
    assert PURE[algorithm].update(CHECK_INPUT) == CHECK_VALUES[algorithm]


@pytest.mark.parametrize(("data", "expected"), AWSCRT_CRC64NVME)
def test_crc64nvme_matches_awscrt(data: bytes, expected: str) -> None:
    assert checksum_of("crc64nvme", data) == expected
    assert b64(checksums._CRC64NVME.update(data), 8) == expected


def test_sha_values() -> None:
    assert checksum_of("sha256", b"") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert checksum_of("sha1", b"") == "2jmj7l5rSw0yVb/vlWAYkK/YBwk="


@pytest.mark.parametrize(
    ("algorithm", "botocore_class"),
    [("crc32", Crc32Checksum), ("sha1", Sha1Checksum), ("sha256", Sha256Checksum)],
)
def test_values_match_botocore(algorithm: Algorithm, botocore_class: type) -> None:
    data = bytes(range(256)) * 10
    theirs = botocore_class()
    theirs.update(data)
    assert checksum_of(algorithm, data) == theirs.b64digest()


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=2000), value=st.integers(0, 2**32 - 1))
def test_pure_crcs_match_native(data: bytes, value: int) -> None:
    assert checksums._CRC32.update(data, value) == zlib.crc32(data, value)
    assert checksums._CRC32C.update(data, value) == crc32c.crc32c(data, value)
    native = checksums._crc_update("crc64nvme")
    assert checksums._CRC64NVME.update(data, value) == native(data, value)


def test_native_crcs_are_installed_and_imported_on_first_use() -> None:
    """Native CRC32C and CRC64NVME (dependencies, not options), imported by the first
    checksum that needs them: a process that never sees one carries neither."""
    assert checksums.NATIVE["crc32c"] and checksums.NATIVE["crc64nvme"]
    assert checksums._crc_update("crc64nvme") is not checksums._CRC64NVME.update
    probe = (
        "import sys; from stratum.s3 import checksums; "
        "before = {'awscrt', 'crc32c'} & set(sys.modules); "
        "checksums.checksum_of('crc64nvme', b'x'); checksums.checksum_of('crc32c', b'x'); "
        "print(sorted(before), sorted({'awscrt', 'crc32c'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "['awscrt',", "'crc32c']"]


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=1500), cuts=st.lists(st.integers(0, 1500), max_size=4))
def test_incremental_equals_one_shot(data: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(min(cut, len(data)) for cut in cuts)})
    for algorithm in ALGORITHMS:
        checksummer = Checksummer(algorithm)
        for start, end in itertools.pairwise(bounds):
            checksummer.update(memoryview(data)[start:end])
        assert checksummer.b64() == checksum_of(algorithm, data)
        assert len(checksummer.digest()) == DIGEST_SIZES[algorithm]


async def test_updates_from_an_executor_thread() -> None:
    data = bytes(range(256)) * 1024
    loop = asyncio.get_running_loop()
    for algorithm in ("crc32", "crc32c", "sha256"):
        checksummer = Checksummer(algorithm)
        await loop.run_in_executor(None, checksummer.update, data)
        await loop.run_in_executor(None, checksummer.update, bytearray(data))
        assert checksummer.b64() == checksum_of(algorithm, data + data)


def test_names() -> None:
    assert checksums.algorithm_of_header("X-Amz-Checksum-CRC64NVME") == "crc64nvme"
    assert checksums.algorithm_of_header("x-amz-checksum-algorithm") is None
    assert checksums.algorithm_of_header("x-amz-checksum-md5") is None
    assert checksums.algorithm_of_header("content-md5") is None
    assert checksums.header_of_algorithm("sha1") == "x-amz-checksum-sha1"
    assert checksums.parse_algorithm(" SHA256 ") == "sha256"
    assert checksums.parse_algorithm("md5") is None
    assert checksums.display_name("crc64nvme") == "CRC64NVME"


def test_decode_checksum() -> None:
    assert decode_checksum("crc32", "AAAAAA==") == b"\0\0\0\0"
    assert decode_checksum("crc32", " AAAAAA== ") == b"\0\0\0\0"
    assert decode_checksum("crc32", "AAAAAAAAAAA=") is None  # 8 bytes
    assert decode_checksum("crc64nvme", "AAAAAA==") is None
    assert decode_checksum("crc32", "AAAA*A==") is None
    assert decode_checksum("crc32", "AAAAAA") is None  # padding missing
    assert decode_checksum("sha256", GOOD["sha256"]) == hashlib.sha256(b"body").digest()


# --- Headers ----------------------------------------------------------------------------------


def test_requested_checksums() -> None:
    assert requested_checksums({}) == {}
    assert requested_checksums({"X-Amz-Checksum-CRC32": f" {GOOD['crc32']} "}) == {
        "crc32": GOOD["crc32"]
    }
    ignored = {
        "x-amz-checksum-algorithm": "CRC32",
        "x-amz-checksum-type": "COMPOSITE",
        "x-amz-checksum-mode": "ENABLED",
        "x-amz-checksum-crc64nvme": GOOD["crc64nvme"],
    }
    assert requested_checksums(ignored) == {"crc64nvme": GOOD["crc64nvme"]}


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-amz-checksum-crc32", GOOD["crc32c"] + "AA=="),
        ("x-amz-checksum-crc32", GOOD["sha1"]),
        ("x-amz-checksum-sha256", "not base64!"),
        ("x-amz-checksum-crc64nvme", GOOD["crc32"]),
    ],
)
def test_malformed_checksum_is_bad_digest(header: str, value: str) -> None:
    """A value no body can have is a wrong checksum: BadDigest, before the body is read."""
    with pytest.raises(S3Error) as info:
        requested_checksums({header: value})
    algorithm = header.removeprefix("x-amz-checksum-").upper()
    assert (info.value.code, info.value.status, info.value.text) == (
        "BadDigest",
        400,
        f"The {algorithm} you specified did not match the calculated checksum.",
    )


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (
            {"x-amz-checksum-crc32": GOOD["crc32"], "x-amz-checksum-sha1": GOOD["sha1"]},
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        ),
        (
            CIMultiDictProxy(CIMultiDict([("x-amz-checksum-crc32", GOOD["crc32"])] * 2)),
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        ),
        (
            {"x-amz-checksum-md5": "1B2M2Y8AsgTpgAmY7PhCfg=="},
            "The algorithm type you specified in x-amz-checksum- header is invalid.",
        ),
    ],
)
def test_requested_checksums_refused(headers: dict[str, str], message: str) -> None:
    with pytest.raises(S3Error) as info:
        requested_checksums(headers)
    assert (info.value.code, info.value.status, info.value.text) == (
        "InvalidRequest",
        400,
        message,
    )


@pytest.mark.parametrize(
    "value",
    [
        "x-amz-checksum-crc32",
        "X-Amz-Checksum-CRC32",
        "x-amz-checksum-crc32,",
        ", x-amz-checksum-crc32, ,",
        " x-amz-checksum-crc32 ",
    ],
)
def test_trailer_checksum(value: str) -> None:
    assert trailer_checksum({"X-Amz-Trailer": value}) == "crc32"


def test_trailer_checksum_absent() -> None:
    assert trailer_checksum({}) is None
    assert trailer_checksum({"x-amz-trailer": " , "}) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("x-amz-checksum-bad", "The value specified in the x-amz-trailer header is not supported"),
        (
            "x-amz-content-sha256",
            "The value specified in the x-amz-trailer header is not supported",
        ),
        ("content-md5", "The value specified in the x-amz-trailer header is not supported"),
        (
            "x-amz-checksum-crc32, x-amz-foo",
            "The value specified in the x-amz-trailer header is not supported",
        ),
        (
            "x-amz-checksum-crc32, x-amz-checksum-sha256",
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        ),
        (
            "x-amz-checksum-crc32, x-amz-checksum-crc32",
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        ),
    ],
)
def test_trailer_checksum_refused(value: str, message: str) -> None:
    with pytest.raises(S3Error) as info:
        trailer_checksum({"x-amz-trailer": value})
    assert error_of(info) == ("InvalidRequest", message)


def test_checksum_request_forms() -> None:
    assert checksum_request({}) is None
    assert checksum_request({"x-amz-checksum-sha1": GOOD["sha1"]}) == ChecksumRequest(
        "sha1", expected=GOOD["sha1"]
    )
    assert checksum_request(
        {"x-amz-trailer": "x-amz-checksum-crc32c", "x-amz-sdk-checksum-algorithm": "CRC32C"}
    ) == ChecksumRequest("crc32c", trailer="x-amz-checksum-crc32c")
    assert checksum_request(
        {"x-amz-checksum-crc32": GOOD["crc32"], "x-amz-sdk-checksum-algorithm": "crc32"}
    ) == ChecksumRequest("crc32", expected=GOOD["crc32"])


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (
            {"x-amz-checksum-crc32": GOOD["crc32"], "x-amz-trailer": "x-amz-checksum-crc32"},
            "Expecting a single x-amz-checksum- header",
        ),
        (
            {"x-amz-checksum-crc32": GOOD["crc32"], "x-amz-trailer": "x-amz-checksum-crc32c"},
            "Expecting a single x-amz-checksum- header",
        ),
        (
            {"x-amz-sdk-checksum-algorithm": "CRC32"},
            "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or "
            "x-amz-trailer headers were found.",
        ),
        (
            {"x-amz-sdk-checksum-algorithm": "SHA256", "x-amz-checksum-crc32": GOOD["crc32"]},
            "Value for x-amz-sdk-checksum-algorithm header is invalid.",
        ),
        (
            {"x-amz-sdk-checksum-algorithm": "MD5", "x-amz-trailer": "x-amz-checksum-crc32"},
            "Value for x-amz-sdk-checksum-algorithm header is invalid.",
        ),
    ],
)
def test_checksum_request_refused(headers: dict[str, str], message: str) -> None:
    with pytest.raises(S3Error) as info:
        checksum_request(headers)
    assert error_of(info) == ("InvalidRequest", message)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_verify_from_header(algorithm: Algorithm) -> None:
    request = checksum_request({f"x-amz-checksum-{algorithm}": GOOD[algorithm]})
    assert request is not None
    computed = request.checksummer()
    computed.update(b"body")
    assert request.verify(computed) == GOOD[algorithm]

    wrong = request.checksummer()
    wrong.update(b"bodY")
    with pytest.raises(S3Error) as info:
        request.verify(wrong)
    assert (info.value.code, info.value.status, info.value.text) == (
        "BadDigest",
        400,
        f"The {algorithm.upper()} you specified did not match the calculated checksum.",
    )
    assert GOOD[algorithm] not in str(info.value)


def test_verify_from_trailer() -> None:
    request = checksum_request({"x-amz-trailer": "x-amz-checksum-crc32"})
    assert request is not None
    computed = request.checksummer()
    computed.update(b"body")
    assert request.verify(computed, {"x-amz-checksum-crc32": GOOD["crc32"]}) == GOOD["crc32"]

    with pytest.raises(S3Error) as info:
        request.verify(computed, {"x-amz-checksum-crc32": GOOD["crc32c"]})
    assert error_of(info) == (
        "BadDigest",
        "The CRC32 you specified did not match the calculated checksum.",
    )
    with pytest.raises(S3Error) as info:
        request.verify(computed, {"x-amz-checksum-crc32": "not-base-64"})
    assert error_of(info) == (
        "BadDigest",
        "The CRC32 you specified did not match the calculated checksum.",
    )
    assert "not-base-64" not in str(info.value)
    with pytest.raises(S3Error) as info:
        request.verify(computed, {})
    assert info.value.code == "InvalidRequest"


# --- Multipart --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_composite_checksum(algorithm: Algorithm) -> None:
    parts = [b"part one", b"part two" * 100, b"3"]
    digests = b"".join(base64.b64decode(checksum_of(algorithm, part)) for part in parts)
    expected = f"{checksum_of(algorithm, digests)}-3"
    assert composite_checksum(algorithm, [checksum_of(algorithm, p) for p in parts]) == expected


def test_composite_checksum_independently() -> None:
    parts = [b"a" * 10, b"b" * 20]
    part_sums = [base64.b64encode(hashlib.sha256(p).digest()).decode() for p in parts]
    whole = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    assert composite_checksum("sha256", part_sums) == base64.b64encode(whole).decode() + "-2"
    crc_parts = [b64(zlib.crc32(p), 4) for p in parts]
    joined = b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts)
    assert composite_checksum("crc32", crc_parts) == f"{b64(zlib.crc32(joined), 4)}-2"
    with pytest.raises(ValueError):
        composite_checksum("crc32", [crc_parts[0], "bad"])


@settings(max_examples=40, deadline=None)
@given(parts=st.lists(st.binary(max_size=600), max_size=6))
def test_full_object_checksum_equals_checksum_of_the_whole(parts: list[bytes]) -> None:
    for algorithm in CRCS:
        values = [(checksum_of(algorithm, part), len(part)) for part in parts]
        assert full_object_checksum(algorithm, values) == checksum_of(algorithm, b"".join(parts))


@pytest.mark.parametrize("algorithm", CRCS)
def test_crc_combine(algorithm: Algorithm) -> None:
    update = checksums._CRC_UPDATE[algorithm]
    first, second = b"The quick brown fox " * 50, b"jumps over the lazy dog" * 70
    combined = crc_combine(algorithm, update(first, 0), update(second, 0), len(second))
    assert combined == update(first + second, 0)
    assert crc_combine(algorithm, update(first, 0), 0, 0) == update(first, 0)
    # Appending 2^k zero bytes twice equals appending 2^(k+1) at once: exercises long lengths.
    zeros = PURE[algorithm].combine(0, 0, 1 << 40)
    crc = update(first, 0)
    twice = crc_combine(algorithm, crc_combine(algorithm, crc, zeros, 1 << 40), zeros, 1 << 40)
    assert twice == crc_combine(
        algorithm, crc, PURE[algorithm].combine(zeros, zeros, 1 << 40), 2 << 40
    )


def test_full_object_needs_a_crc() -> None:
    with pytest.raises(ValueError):
        full_object_checksum("sha256", [(GOOD["sha256"], 4)])
    with pytest.raises(ValueError):
        crc_combine("sha1", 0, 0, 0)
    with pytest.raises(ValueError):
        full_object_checksum("crc32", [("bad", 4)])


@pytest.mark.parametrize(
    ("algorithm", "requested", "kind"),
    [
        ("crc32", None, "COMPOSITE"),
        ("crc32c", "", "COMPOSITE"),
        ("sha256", None, "COMPOSITE"),
        ("crc64nvme", None, "FULL_OBJECT"),
        ("crc32", "full_object", "FULL_OBJECT"),
        ("crc32c", "COMPOSITE", "COMPOSITE"),
    ],
)
def test_multipart_checksum_type(algorithm: Algorithm, requested: str | None, kind: str) -> None:
    assert multipart_checksum_type(algorithm, requested) == kind


@pytest.mark.parametrize(
    ("algorithm", "requested", "message"),
    [
        (
            "sha256",
            "FULL_OBJECT",
            "The FULL_OBJECT checksum type cannot be used with the sha256 checksum algorithm.",
        ),
        (
            "crc64nvme",
            "COMPOSITE",
            "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm.",
        ),
        ("crc32", "BOTH", "Value for x-amz-checksum-type header is invalid."),
    ],
)
def test_multipart_checksum_type_refused(
    algorithm: Algorithm, requested: str, message: str
) -> None:
    with pytest.raises(S3Error) as info:
        multipart_checksum_type(algorithm, requested)
    assert error_of(info) == ("InvalidRequest", message)
