"""Signature math for aws-chunked bodies (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``).

Only the signatures live here; framing the body (``<hex size>;chunk-signature=<sig>\\r\\n``
...) is the body parser's job. Each chunk's signature chains on the previous one, the first
on the seed signature (the request's own, from :class:`~stratum.auth.request.ChunkSigningContext`):

    AWS4-HMAC-SHA256-PAYLOAD\\n<amz date>\\n<scope>\\n<previous signature>\\n
    <sha256 of the empty string>\\n<sha256 of the chunk data>

The final chunk is empty. With a signed trailer, the trailer's signature chains on the final
chunk's:

    AWS4-HMAC-SHA256-TRAILER\\n<amz date>\\n<scope>\\n<previous signature>\\n
    <sha256 of the trailer lines>

where the trailer lines are ``name:value\\n`` for each trailing header in the order sent,
``x-amz-trailer-signature`` excluded (see :func:`canonical_trailer`).

Digests are passed as lower-case hex so a parser can hash large chunks off the event loop and
hand over just the digest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from stratum.auth.checks import signatures_equal
from stratum.auth.errors import AuthError
from stratum.auth.request import EMPTY_SHA256, ChunkSigningContext
from stratum.auth.sigv4 import sign

CHUNK_ALGORITHM = "AWS4-HMAC-SHA256-PAYLOAD"
TRAILER_ALGORITHM = "AWS4-HMAC-SHA256-TRAILER"
TRAILER_SIGNATURE_HEADER = "x-amz-trailer-signature"


def chunk_string_to_sign(
    amz_date: str, scope: str, previous_signature: str, chunk_sha256: str
) -> str:
    return (
        f"{CHUNK_ALGORITHM}\n{amz_date}\n{scope}\n{previous_signature}\n"
        f"{EMPTY_SHA256}\n{chunk_sha256}"
    )


def trailer_string_to_sign(
    amz_date: str, scope: str, previous_signature: str, trailer_sha256: str
) -> str:
    return f"{TRAILER_ALGORITHM}\n{amz_date}\n{scope}\n{previous_signature}\n{trailer_sha256}"


def canonical_trailer(trailers: Iterable[tuple[str, str]]) -> bytes:
    """The bytes whose SHA-256 the trailer signature covers: ``name:value\\n`` per header."""
    return b"".join(
        f"{name.strip().lower()}:{value.strip()}\n".encode()
        for name, value in trailers
        if name.strip().lower() != TRAILER_SIGNATURE_HEADER
    )


def chunk_signature(
    context: ChunkSigningContext, previous_signature: str, chunk_sha256: str
) -> str:
    return _chained(chunk_string_to_sign, context, previous_signature, chunk_sha256)


def trailer_signature(
    context: ChunkSigningContext, previous_signature: str, trailer_sha256: str
) -> str:
    return _chained(trailer_string_to_sign, context, previous_signature, trailer_sha256)


def _chained(
    string_to_sign: Callable[[str, str, str, str], str],
    context: ChunkSigningContext,
    previous_signature: str,
    sha256: str,
) -> str:
    to_sign = string_to_sign(context.amz_date, context.scope, previous_signature, sha256)
    return sign(context.signing_key, to_sign)


def verify_chunk_signature(
    context: ChunkSigningContext, previous_signature: str, chunk_sha256: str, claimed: str
) -> str:
    """Check one chunk's signature; return it (the next chunk chains on it) or raise."""
    expected = chunk_signature(context, previous_signature, chunk_sha256)
    if not signatures_equal(expected, claimed):
        raise AuthError("SignatureDoesNotMatch")
    return expected


def verify_trailer_signature(
    context: ChunkSigningContext, previous_signature: str, trailer_sha256: str, claimed: str
) -> None:
    """Check the trailer's signature (``previous_signature``: the final, empty chunk's)."""
    if not signatures_equal(
        trailer_signature(context, previous_signature, trailer_sha256), claimed
    ):
        raise AuthError("SignatureDoesNotMatch")


class ChunkSignatureChain:
    """Carries the previous signature from chunk to chunk so callers cannot get it wrong."""

    __slots__ = ("_context", "_finished", "_previous")

    def __init__(self, context: ChunkSigningContext) -> None:
        self._context = context
        self._previous = context.seed_signature
        self._finished = False

    @property
    def previous_signature(self) -> str:
        return self._previous

    def verify_chunk(self, chunk_sha256: str, claimed: str) -> None:
        """Check the next chunk; the empty final chunk (``EMPTY_SHA256``) ends the chain."""
        if self._finished:
            raise AuthError("SignatureDoesNotMatch", "A chunk was sent after the final chunk.")
        self._previous = verify_chunk_signature(
            self._context, self._previous, chunk_sha256, claimed
        )
        self._finished = chunk_sha256 == EMPTY_SHA256

    def verify_trailer(self, trailer_sha256: str, claimed: str) -> None:
        """Check the trailer's signature; only valid after the final chunk."""
        if not self._finished:
            raise AuthError("SignatureDoesNotMatch", "The trailer came before the final chunk.")
        verify_trailer_signature(self._context, self._previous, trailer_sha256, claimed)
