"""What authentication sees of a request, and what it answers (pure: no HTTP framework)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class RequestView:
    """What signature verification needs to see of a request.

    ``raw_path`` is the path exactly as sent (percent-encoded, no query string); ``query``
    the *decoded* query pairs in wire order, a key without ``=`` having the value ``""``;
    ``headers`` maps **lower-case** names to values, repeated headers already joined (use
    :meth:`from_wire`). Decode wire bytes as UTF-8 with ``surrogateescape`` so that encoding
    them back gives the bytes the client signed.
    """

    method: str
    raw_path: str
    query: Sequence[tuple[str, str]]
    headers: Mapping[str, str]

    @classmethod
    def from_wire(
        cls,
        method: str,
        raw_path: str,
        query: Sequence[tuple[str, str]],
        headers: Iterable[tuple[str, str]],
    ) -> RequestView:
        """Build a view from header pairs in any case, joining repeats the way SigV4 does."""
        joined: dict[str, str] = {}
        for name, value in headers:
            key = name.lower()
            value = trimall(value)
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        return cls(method, raw_path, query, joined)


@dataclass(frozen=True, slots=True)
class ChunkSigningContext:
    """What checking the signatures of an aws-chunked body needs (seed = request signature)."""

    seed_signature: str
    signing_key: bytes = field(repr=False)
    scope: str
    amz_date: str
    trailer: bool


@dataclass(frozen=True, slots=True)
class AuthResult:
    """A verified request: who signed it and what its ``x-amz-content-sha256`` promises.

    ``payload_hash`` is a lower-case 64-hex SHA-256 (the caller checks the body against it),
    ``UNSIGNED-PAYLOAD`` or one of the ``STREAMING-*`` values. ``chunk_context`` is set for
    the two signed streaming values, whose chunks carry chained signatures.
    """

    access_key: str
    payload_hash: str
    presigned: bool = False
    chunk_context: ChunkSigningContext | None = None

    @property
    def streaming(self) -> bool:
        return self.payload_hash.startswith("STREAMING-")


def trimall(value: str) -> str:
    """Strip, and collapse every inner whitespace run to one space (botocore's rule)."""
    return " ".join(value.split())
