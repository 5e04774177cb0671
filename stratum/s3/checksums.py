"""S3 flexible checksums: ``x-amz-checksum-{crc32,crc32c,crc64nvme,sha1,sha256}``.

A checksum travels as the base64 of the algorithm's big-endian digest (4 bytes for the
CRC-32s, 8 for CRC-64/NVME, 20 for SHA-1, 32 for SHA-256). A request names at most one, either
as a header (checked here before the body is read) or, for ``aws-chunked`` bodies, as a
trailer declared by ``x-amz-trailer`` (its value only known once the body has been decoded,
see :mod:`stratum.s3.chunked`). :func:`checksum_request` turns a request's headers into the
one :class:`ChecksumRequest`, with the error codes and messages AWS uses.

Implementations: CRC32 is :func:`zlib.crc32`; CRC32C the ``crc32c`` package (hardware
accelerated); CRC64NVME ``awscrt.checksums.crc64nvme`` (AWS's own). Both packages are
dependencies, imported on first use; were one missing, its CRC would fall back to a
table-driven pure-Python one that is correct but slow (a few MB/s). Every
:class:`Checksummer` may be updated from an executor thread (one thread at a time); the
native ones release the GIL on large buffers.

Multipart objects carry either a COMPOSITE checksum (the checksum of the concatenated part
digests, suffixed ``-<part count>``: :func:`composite_checksum`) or, for the CRCs, a
FULL_OBJECT one: the CRC of the whole object, obtained from the part CRCs and lengths
without reading the data again (:func:`full_object_checksum`, :func:`crc_combine`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import importlib
import importlib.util
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, cast, get_args

from stratum.s3.errors import S3Error

Algorithm = Literal["crc32", "crc32c", "crc64nvme", "sha1", "sha256"]
ALGORITHMS: Final[tuple[Algorithm, ...]] = get_args(Algorithm)
DIGEST_SIZES: Final[Mapping[Algorithm, int]] = {
    "crc32": 4,
    "crc32c": 4,
    "crc64nvme": 8,
    "sha1": 20,
    "sha256": 32,
}
CRC_ALGORITHMS: Final = frozenset[Algorithm]({"crc32", "crc32c", "crc64nvme"})

COMPOSITE = "COMPOSITE"
FULL_OBJECT = "FULL_OBJECT"

HEADER_PREFIX = "x-amz-checksum-"
SDK_ALGORITHM_HEADER = "x-amz-sdk-checksum-algorithm"
TRAILER_HEADER = "x-amz-trailer"
TYPE_HEADER = "x-amz-checksum-type"
# x-amz-checksum-* headers that name no checksum value (CreateMultipartUpload, GetObject).
_NOT_VALUES = frozenset({"x-amz-checksum-algorithm", "x-amz-checksum-type", "x-amz-checksum-mode"})

_SINGLE = "Expecting a single x-amz-checksum- header"
_MULTIPLE = _SINGLE + ". Multiple checksum Types are not allowed."

BytesLike = bytes | bytearray | memoryview


# --- CRC arithmetic --------------------------------------------------------------------------


class _ReflectedCrc:
    """A reflected CRC whose init and final XOR are all ones (CRC-32, CRC-32C, CRC-64/NVME).

    Holds the byte table for the pure-Python fallback and the GF(2) arithmetic that combines
    two CRCs (the method of zlib's ``crc32_combine``, written for any width): appending
    ``n`` bytes to a message multiplies its register by ``x^(8n)`` modulo the polynomial.
    """

    def __init__(self, width: int, reflected_poly: int) -> None:
        self.width = width
        self.poly = reflected_poly
        self.mask = (1 << width) - 1
        table = []
        for byte in range(256):
            crc = byte
            for _ in range(8):
                crc = (crc >> 1) ^ reflected_poly if crc & 1 else crc >> 1
            table.append(crc)
        self._table = tuple(table)
        # _x2n[k] = x^(2^k) mod P, bit-reversed (x^0 is the top bit); enough for 2^64 bytes.
        self._x2n = [1 << (width - 2)]
        for _ in range(3 + 64):
            self._x2n.append(self._multiply(self._x2n[-1], self._x2n[-1]))

    def update(self, data: BytesLike, value: int = 0) -> int:
        """``zlib.crc32``-style: continue the CRC ``value`` over ``data`` (pure Python)."""
        table = self._table
        crc = value ^ self.mask
        for byte in memoryview(data).cast("B"):
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ self.mask

    def combine(self, crc1: int, crc2: int, length2: int) -> int:
        """The CRC of ``A + B`` from ``crc1 = CRC(A)``, ``crc2 = CRC(B)`` and ``len(B)``."""
        if length2 < 0:
            raise ValueError("negative length")
        return self._multiply(self._x_to_8n(length2), crc1) ^ crc2

    def _multiply(self, a: int, b: int) -> int:
        # Carry-less a*b mod P in the reflected representation (zlib's multmodp).
        if a == 0:
            return 0
        m = 1 << (self.width - 1)
        product = 0
        while True:
            if a & m:
                product ^= b
                if a & (m - 1) == 0:
                    return product
            m >>= 1
            b = (b >> 1) ^ self.poly if b & 1 else b >> 1

    def _x_to_8n(self, n: int) -> int:
        power = 1 << (self.width - 1)  # x^0
        k = 3  # 8n = n * 2^3
        while n:
            if n & 1:
                power = self._multiply(self._x2n[k], power)
            n >>= 1
            k += 1
        return power


_CRC32 = _ReflectedCrc(32, 0xEDB88320)
_CRC32C = _ReflectedCrc(32, 0x82F63B78)
_CRC64NVME = _ReflectedCrc(64, 0x9A6C9329AC4BC9B5)
_CRC_MATH: Final[Mapping[Algorithm, _ReflectedCrc]] = {
    "crc32": _CRC32,
    "crc32c": _CRC32C,
    "crc64nvme": _CRC64NVME,
}

CrcFunction = Callable[[BytesLike, int], int]


# The native CRCs are imported on first use, not with this module: crc32c's __init__ imports
# importlib.metadata (and zipfile) for its __version__, and awscrt loads a shared library of
# several MB: heap and mappings every server process would carry though most never see such
# a checksum. (module, function) of each; awscrt has no type information of its own.
_NATIVE_CRCS: Final[Mapping[Algorithm, tuple[str, str]]] = {
    "crc32c": ("crc32c", "crc32c"),
    "crc64nvme": ("awscrt.checksums", "crc64nvme"),
}


def _installed(module: str) -> bool:
    """Whether the top-level package of ``module`` can be imported (without importing it)."""
    return importlib.util.find_spec(module.partition(".")[0]) is not None


def _native(algorithm: Algorithm) -> CrcFunction | None:
    module_name, name = _NATIVE_CRCS[algorithm]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    function = getattr(module, name, None)
    return cast(CrcFunction, function) if callable(function) else None


_CRC_UPDATE: dict[Algorithm, CrcFunction] = {"crc32": zlib.crc32}


def _crc_update(algorithm: Algorithm) -> CrcFunction:
    """The algorithm's CRC function, its native one looked up on first use."""
    update = _CRC_UPDATE.get(algorithm)
    if update is None:
        update = _CRC_UPDATE[algorithm] = _native(algorithm) or _CRC_MATH[algorithm].update
    return update


async def load_native(algorithm: str) -> None:
    """Import the algorithm's native CRC (if it has one) in the default executor: a first
    import takes about 100 ms of CPU, which on the event loop would stall every request.
    A request whose body is checksummed awaits this before its first chunk."""
    if algorithm in _NATIVE_CRCS and algorithm not in _CRC_UPDATE:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _crc_update, cast(Algorithm, algorithm))


NATIVE: Final[Mapping[Algorithm, bool]] = {
    "crc32": True,
    "crc32c": _installed(_NATIVE_CRCS["crc32c"][0]),
    "crc64nvme": _installed(_NATIVE_CRCS["crc64nvme"][0]),
    "sha1": True,
    "sha256": True,
}
"""Whether each algorithm runs native code here (False: the slow pure-Python fallback)."""


# --- Computing -------------------------------------------------------------------------------


class _Hash(Protocol):
    def update(self, data: BytesLike, /) -> None: ...
    def digest(self) -> bytes: ...


class Checksummer:
    """Computes one algorithm's checksum incrementally; a hasher for the storage write path."""

    __slots__ = ("_crc", "_crc_update", "_hash", "algorithm")

    def __init__(self, algorithm: Algorithm, *, native: bool = True) -> None:
        """``native=False``: a native CRC only if already imported, else the pure-Python one
        (for a few bytes, where importing would cost more than it saves)."""
        self.algorithm: Algorithm = algorithm
        self._hash: _Hash | None = None
        self._crc_update: CrcFunction | None = None
        self._crc = 0
        if algorithm in CRC_ALGORITHMS:
            # Looked up at the first update, not here: see load_native.
            self._crc_update = _CRC_UPDATE.get(algorithm)
            if self._crc_update is None and not native:
                self._crc_update = _CRC_MATH[algorithm].update
        else:
            self._hash = hashlib.new(algorithm)

    def update(self, data: BytesLike) -> None:
        if self._hash is not None:
            self._hash.update(data)
            return
        if self._crc_update is None:
            self._crc_update = _crc_update(self.algorithm)
        self._crc = self._crc_update(data, self._crc)

    def digest(self) -> bytes:
        if self._hash is not None:
            return self._hash.digest()
        return self._crc.to_bytes(DIGEST_SIZES[self.algorithm], "big")

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


def checksum_of(algorithm: Algorithm, data: BytesLike) -> str:
    """The base64 checksum of ``data`` in one call."""
    checksummer = Checksummer(algorithm)
    checksummer.update(data)
    return checksummer.b64()


# --- Names and values ------------------------------------------------------------------------


def parse_algorithm(name: str) -> Algorithm | None:
    """``"CRC32"``, ``"crc64nvme"``... -> the algorithm; ``None`` if S3 has no such one."""
    key = name.strip().lower()
    return cast(Algorithm, key) if key in DIGEST_SIZES else None


def header_of_algorithm(algorithm: Algorithm) -> str:
    """``x-amz-checksum-<algorithm>``, the header (and trailer) carrying its value."""
    return HEADER_PREFIX + algorithm


def algorithm_of_header(name: str) -> Algorithm | None:
    """``x-amz-checksum-crc32`` (any case) -> ``"crc32"``; ``None`` for any other name."""
    key = name.strip().lower()
    if not key.startswith(HEADER_PREFIX) or key in _NOT_VALUES:
        return None
    return parse_algorithm(key.removeprefix(HEADER_PREFIX))


def element_of(algorithm: Algorithm) -> str:
    """The XML element of the algorithm's value: ``ChecksumCRC32``, ``ChecksumCRC64NVME``..."""
    return "Checksum" + algorithm.upper()


def algorithm_of_element(name: str) -> Algorithm | None:
    """``ChecksumSHA256`` -> ``"sha256"``; ``None`` for any other name."""
    return parse_algorithm(name.removeprefix("Checksum")) if name.startswith("Checksum") else None


def display_name(algorithm: Algorithm) -> str:
    """How S3 writes the algorithm in XML, ``x-amz-checksum-algorithm`` and messages."""
    return algorithm.upper()


def decode_checksum(algorithm: Algorithm, value: str) -> bytes | None:
    """The digest a base64 ``value`` stands for; ``None`` unless it is one of the right size."""
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest if len(digest) == DIGEST_SIZES[algorithm] else None


def requested_checksums(
    headers: Mapping[str, str], *, composite: bool = False
) -> dict[Algorithm, str]:
    """The checksum values sent as ``x-amz-checksum-<algorithm>`` headers, validated.

    At most one entry comes back. ``composite``: a value may end in ``-<part count>``
    (CompleteMultipartUpload's, of a COMPOSITE checksum). ``headers`` may be any mapping
    (names in any case); a multi-valued one such as aiohttp's ``CIMultiDictProxy`` yields
    each occurrence.
    """
    found: dict[Algorithm, str] = {}
    count = 0
    for name, value in headers.items():
        key = name.lower()
        if not key.startswith(HEADER_PREFIX) or key in _NOT_VALUES:
            continue
        algorithm = parse_algorithm(key.removeprefix(HEADER_PREFIX))
        if algorithm is None:
            raise S3Error(
                "InvalidRequest",
                "The algorithm type you specified in x-amz-checksum- header is invalid.",
            )
        count += 1
        found[algorithm] = value.strip()
    if count > 1:
        raise S3Error("InvalidRequest", _MULTIPLE)
    for algorithm, value in found.items():
        digest, dash, parts = value.partition("-") if composite else (value, "", "")
        if dash and not (parts.isascii() and parts.isdigit()):
            raise mismatch_error(algorithm)
        if decode_checksum(algorithm, digest) is None:
            raise mismatch_error(algorithm)  # no body has it: as AWS, the digest is bad
    return found


def trailer_checksum(headers: Mapping[str, str]) -> Algorithm | None:
    """The checksum algorithm whose value ``x-amz-trailer`` announces, if any.

    Only checksum trailers are supported (as on AWS); empty list items are ignored.
    """
    names = [
        name.strip().lower()
        for key, value in headers.items()
        if key.lower() == TRAILER_HEADER
        for name in value.split(",")
        if name.strip()
    ]
    algorithms = []
    for name in names:
        algorithm = algorithm_of_header(name)
        if algorithm is None:
            raise S3Error(
                "InvalidRequest", "The value specified in the x-amz-trailer header is not supported"
            )
        algorithms.append(algorithm)
    if len(algorithms) > 1:
        raise S3Error("InvalidRequest", _MULTIPLE)
    return algorithms[0] if algorithms else None


@dataclass(frozen=True, slots=True)
class ChecksumRequest:
    """The one checksum a request asks S3 to verify and store.

    ``expected`` is the base64 value from the header; it is ``None`` when the value comes
    in the trailer named ``trailer`` (pass ``[trailer]`` as the decoder's expected trailers).
    """

    algorithm: Algorithm
    expected: str | None = None
    trailer: str | None = None

    def checksummer(self) -> Checksummer:
        return Checksummer(self.algorithm)

    def expected_value(self, trailers: Mapping[str, str]) -> str:
        """The value to check the body against; ``trailers`` as decoded (names lower case)."""
        if self.expected is not None:
            return self.expected
        assert self.trailer is not None
        value = trailers.get(self.trailer)
        if value is None:
            # The decoder already refuses a body lacking an expected trailer.
            raise S3Error("InvalidRequest", f"The {self.trailer} trailer was not found.")
        if decode_checksum(self.algorithm, value) is None:
            raise mismatch_error(self.algorithm)
        return value.strip()

    def verify(self, computed: Checksummer, trailers: Mapping[str, str] | None = None) -> str:
        """Check the body's checksum; return the canonical base64 value to store."""
        expected = self.expected_value(trailers or {})
        verify_checksum(computed, expected)
        return computed.b64()


def checksum_request(headers: Mapping[str, str]) -> ChecksumRequest | None:
    """Everything a write request says about its checksum, checked the way AWS checks it.

    Raises ``InvalidRequest`` for an unknown algorithm, a malformed value, more than one
    checksum (headers and trailer together), or an ``x-amz-sdk-checksum-algorithm`` that
    matches neither. Whether a trailer may be used at all (only with an ``aws-chunked``
    body) is the caller's check.
    """
    in_headers = requested_checksums(headers)
    in_trailer = trailer_checksum(headers)
    if in_headers and in_trailer is not None:
        raise S3Error("InvalidRequest", _SINGLE)
    request: ChecksumRequest | None = None
    for algorithm, value in in_headers.items():
        request = ChecksumRequest(algorithm, expected=value)
    if in_trailer is not None:
        request = ChecksumRequest(in_trailer, trailer=header_of_algorithm(in_trailer))
    sdk_algorithm = _header(headers, SDK_ALGORITHM_HEADER)
    if sdk_algorithm:
        if request is None:
            raise S3Error(
                "InvalidRequest",
                "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* "
                "or x-amz-trailer headers were found.",
            )
        if parse_algorithm(sdk_algorithm) != request.algorithm:
            raise S3Error(
                "InvalidRequest", "Value for x-amz-sdk-checksum-algorithm header is invalid."
            )
    return request


def verify_checksum(computed: Checksummer, expected: str) -> None:
    """Raise ``BadDigest`` unless ``computed`` matches the base64 ``expected``."""
    if computed.digest() != decode_checksum(computed.algorithm, expected):
        raise mismatch_error(computed.algorithm)


def mismatch_error(algorithm: Algorithm) -> S3Error:
    """AWS's ``BadDigest`` for a body whose checksum is not the one the client sent."""
    return S3Error(
        "BadDigest",
        f"The {display_name(algorithm)} you specified did not match the calculated checksum.",
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value.strip()
    return None


# --- Multipart -------------------------------------------------------------------------------


def checksum_type_of(value: str) -> str:
    """The ChecksumType S3 shows with a stored checksum: COMPOSITE for a multipart composite
    (its value ends in ``-<part count>``), FULL_OBJECT for a checksum of the whole object."""
    return COMPOSITE if "-" in value else FULL_OBJECT


def response_headers(checksums: Mapping[str, str]) -> dict[str, str]:
    """``x-amz-checksum-<algorithm>`` and ``x-amz-checksum-type`` for stored checksums."""
    out = {header_of_algorithm(cast(Algorithm, alg)): value for alg, value in checksums.items()}
    for value in checksums.values():
        out[TYPE_HEADER] = checksum_type_of(value)
    return out


def multipart_checksum_type(algorithm: Algorithm, requested: str | None) -> str:
    """The checksum type of a multipart upload (CreateMultipartUpload's ``x-amz-checksum-type``).

    Defaults as AWS does: FULL_OBJECT for CRC64NVME, COMPOSITE otherwise. SHA-1/SHA-256
    cannot be FULL_OBJECT and CRC64NVME cannot be COMPOSITE.
    """
    if requested is None or not requested.strip():
        return FULL_OBJECT if algorithm == "crc64nvme" else COMPOSITE
    kind = requested.strip().upper()
    if kind not in (COMPOSITE, FULL_OBJECT):
        raise S3Error("InvalidRequest", "Value for x-amz-checksum-type header is invalid.")
    if (kind == FULL_OBJECT and algorithm not in CRC_ALGORITHMS) or (
        kind == COMPOSITE and algorithm == "crc64nvme"
    ):
        raise S3Error(
            "InvalidRequest",
            f"The {kind} checksum type cannot be used with the {algorithm} checksum algorithm.",
        )
    return kind


def composite_checksum(algorithm: Algorithm, part_checksums: Sequence[str]) -> str:
    """AWS's COMPOSITE checksum: ``base64(digest(part digests concatenated)) + "-<n>"``.

    ``part_checksums`` are the parts' base64 values in part order; a malformed one is a
    :class:`ValueError` (they are the values S3 itself stored for the parts).
    """
    checksummer = Checksummer(algorithm, native=False)  # a few bytes a part
    for value in part_checksums:
        digest = decode_checksum(algorithm, value)
        if digest is None:
            raise ValueError(f"malformed {algorithm} part checksum {value!r}")
        checksummer.update(digest)
    return f"{checksummer.b64()}-{len(part_checksums)}"


def crc_combine(algorithm: Algorithm, crc1: int, crc2: int, length2: int) -> int:
    """The CRC of ``A + B`` given ``CRC(A)``, ``CRC(B)`` and ``len(B)`` (integers)."""
    if algorithm not in CRC_ALGORITHMS:
        raise ValueError(f"{algorithm} is not a CRC")
    return _CRC_MATH[algorithm].combine(crc1, crc2, length2)


def full_object_checksum(algorithm: Algorithm, parts: Iterable[tuple[str, int]]) -> str:
    """The FULL_OBJECT CRC of an object from its parts' ``(base64 CRC, length)`` in order.

    A non-CRC algorithm or a malformed part value is a :class:`ValueError` (validate the
    upload's type with :func:`multipart_checksum_type`).
    """
    if algorithm not in CRC_ALGORITHMS:
        raise ValueError(f"the FULL_OBJECT checksum type needs a CRC, not {algorithm}")
    math = _CRC_MATH[algorithm]
    crc = 0  # the CRC of no bytes
    for value, length in parts:
        digest = decode_checksum(algorithm, value)
        if digest is None:
            raise ValueError(f"malformed {algorithm} part checksum {value!r}")
        crc = math.combine(crc, int.from_bytes(digest, "big"), length)
    return base64.b64encode(crc.to_bytes(DIGEST_SIZES[algorithm], "big")).decode("ascii")
