"""Who signed a request: AWS Signature Version 4 and 2 (pure: no HTTP framework).

One entry point, :func:`authenticate`, takes what a request shows (a :class:`RequestView`),
a way to find a secret key and the server's region and time, and answers with an
:class:`AuthResult`, with ``None`` for a request that carries no credentials at all, or
raises :class:`AuthError` with the code AWS would answer. Whether an anonymous request may
go on is the caller's decision.

- :mod:`stratum.auth.sigv4`: the ``AWS4-HMAC-SHA256`` header and presigned URLs;
- :mod:`stratum.auth.sigv2`: ``Authorization: AWS`` and ``AWSAccessKeyId``/``Signature``
  query strings;
- :mod:`stratum.auth.streaming`: the chained signatures of aws-chunked bodies, checked as
  the body arrives from the :class:`ChunkSigningContext` a SigV4 result carries;
- :mod:`stratum.auth.checks`: what those share (request time, secrets, refusals).

Browser POST uploads (``PostObject``, a ``multipart/form-data`` body) carry their
credentials in form fields and sign the base64 ``policy`` field rather than a canonical
request: :mod:`stratum.auth.post_policy` is their entry point (the signature, the policy
document and its conditions), called with the fields the S3 layer read from the body.
"""

from __future__ import annotations

from stratum.auth import sigv2, sigv4
from stratum.auth.checks import LookupSecret, one_mechanism_only
from stratum.auth.errors import AuthError
from stratum.auth.request import AuthResult, ChunkSigningContext, RequestView

__all__ = [
    "AuthError",
    "AuthResult",
    "ChunkSigningContext",
    "LookupSecret",
    "RequestView",
    "authenticate",
    "is_anonymous",
]

# Query parameters that mean "this request is signed" (SigV4 and SigV2).
_CREDENTIAL_PARAMS = frozenset(
    {"X-Amz-Algorithm", "X-Amz-Credential", "AWSAccessKeyId", "Signature"}
)
_SIGV2_QUERY = frozenset({"AWSAccessKeyId", "Signature"})


def authenticate(
    request: RequestView,
    lookup_secret: LookupSecret,
    *,
    region: str,
    now: float,
    virtual_bucket: str | None = None,
    allow_sigv2: bool = True,
) -> AuthResult | None:
    """Authenticate ``request``; ``None`` when it carries no credentials (anonymous).

    ``lookup_secret`` maps an access key id to its secret (``None`` if unknown); ``now`` is
    the server time in epoch seconds; ``virtual_bucket`` the bucket named by the Host
    header (virtual-hosted style), which SigV2 signs as part of the resource. Raises
    :class:`AuthError` for a request signed wrongly, late, or in two ways at once, and
    for any SigV2 request when ``allow_sigv2`` is false (``[server] sigv2``).
    """
    authorization = request.headers.get("authorization")
    presigned = any(k == "X-Amz-Algorithm" for k, _ in request.query)
    if authorization is not None:
        if presigned:
            raise one_mechanism_only(authorization)
        if authorization.strip().partition(" ")[0] == sigv2.SCHEME:
            return _sigv2(request, lookup_secret, now, virtual_bucket, allow_sigv2)
        return sigv4.verify(request, lookup_secret, region=region, now=now)
    if presigned:
        return sigv4.verify(request, lookup_secret, region=region, now=now)
    if any(k in _SIGV2_QUERY for k, _ in request.query):
        return _sigv2(request, lookup_secret, now, virtual_bucket, allow_sigv2)
    if is_anonymous(request):
        return None
    raise AuthError("AccessDenied")  # a credential without the rest of a signature


def is_anonymous(request: RequestView) -> bool:
    """Whether the request carries no credentials of any kind (a candidate for public access)."""
    if "authorization" in request.headers:
        return False
    return not any(k in _CREDENTIAL_PARAMS for k, _ in request.query)


def _sigv2(
    request: RequestView,
    lookup_secret: LookupSecret,
    now: float,
    virtual_bucket: str | None,
    allowed: bool,
) -> AuthResult:
    if not allowed:  # AWS's answer in the regions that never took SigV2
        raise AuthError(
            "InvalidRequest",
            "The authorization mechanism you have provided is not supported. "
            "Please use AWS4-HMAC-SHA256.",
        )
    return sigv2.verify(request, lookup_secret, now=now, virtual_bucket=virtual_bucket)
