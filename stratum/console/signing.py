"""Signing the console's own S3 requests with the logged-in user's keys (AWS SigV4).

The console is a client of the server it runs in: every bucket and object action is a real S3
request, signed here and checked by the server exactly as any client's, so whatever decides
access for S3 clients decides it for the console too. The canonical request and the signing
key come from :mod:`stratum.auth.sigv4`, the code that verifies signatures, so the two cannot
drift apart.

Two forms, as AWS S3 takes them:

- :func:`signed_headers`: the ``Authorization`` header; the body is ``UNSIGNED-PAYLOAD`` unless
  the caller passes its SHA-256 (a streamed upload is never read twice to hash it);
- :func:`presigned_url`: a URL anyone can use until it expires (share links).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from stratum.auth.checks import format_amz_date
from stratum.auth.request import UNSIGNED_PAYLOAD, RequestView
from stratum.auth.sigv4 import (
    ALGORITHM,
    MAX_PRESIGNED_EXPIRES,
    SERVICE,
    TERMINAL,
    canonical_query_string,
    canonical_request,
    sign,
    signing_key,
    string_to_sign,
)

__all__ = ["MAX_PRESIGNED_EXPIRES", "Credentials", "object_path", "presigned_url", "signed_headers"]


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    def __repr__(self) -> str:  # never print a secret by accident
        return f"Credentials({self.access_key!r})"


def object_path(bucket: str = "", key: str = "") -> str:
    """The path-style request path, encoded as S3 clients sign it (``/`` kept)."""
    if not bucket:
        return "/"
    path = f"/{bucket}/{key}" if key else f"/{bucket}"
    return quote(path, safe="/-_.~", errors="surrogateescape")


def _scope(amz_date: str, region: str) -> str:
    return f"{amz_date[:8]}/{region}/{SERVICE}/{TERMINAL}"


def signed_headers(
    creds: Credentials,
    method: str,
    host: str,
    path: str,
    query: Sequence[tuple[str, str]],
    *,
    region: str,
    now: float,
    payload_hash: str = UNSIGNED_PAYLOAD,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers of a signed request: ``headers`` plus Host, the date, the payload hash and
    Authorization. ``path`` is encoded (:func:`object_path`), ``query`` decoded pairs."""
    amz_date = format_amz_date(now)
    out = {
        **(headers or {}),
        "host": host,
        "x-amz-date": amz_date,
        "x-amz-content-sha256": payload_hash,
    }
    names = ";".join(sorted(name.lower() for name in out))
    view = RequestView.from_wire(method, path, query, out.items())
    scope = _scope(amz_date, region)
    canonical = canonical_request(view, names, payload_hash)
    signature = sign(
        signing_key(creds.secret_key, amz_date[:8], region),
        string_to_sign(amz_date, scope, canonical),
    )
    out["authorization"] = (
        f"{ALGORITHM} Credential={creds.access_key}/{scope}, SignedHeaders={names}, "
        f"Signature={signature}"
    )
    return out


def presigned_url(
    creds: Credentials,
    method: str,
    base: str,
    host: str,
    path: str,
    *,
    region: str,
    now: float,
    expires: int,
    query: Sequence[tuple[str, str]] = (),
) -> str:
    """A presigned URL: ``base`` is ``scheme://host[:port]`` as the user will reach the server
    (``host`` the Host header that will carry), valid ``expires`` seconds from ``now``."""
    if not 1 <= expires <= MAX_PRESIGNED_EXPIRES:
        raise ValueError(f"a link expires after 1 second to {MAX_PRESIGNED_EXPIRES} seconds")
    amz_date = format_amz_date(now)
    scope = _scope(amz_date, region)
    params = [
        *query,
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{creds.access_key}/{scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    view = RequestView.from_wire(method, path, params, [("host", host)])
    canonical = canonical_request(view, "host", UNSIGNED_PAYLOAD)
    signature = sign(
        signing_key(creds.secret_key, amz_date[:8], region),
        string_to_sign(amz_date, scope, canonical),
    )
    query_string = canonical_query_string([*params, ("X-Amz-Signature", signature)])
    return f"{base}{path}?{query_string}"
