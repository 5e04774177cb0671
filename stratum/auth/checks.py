"""The checks and refusals SigV4 and SigV2 share: request time, secrets, signatures."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache

from stratum.auth.errors import AuthError

MAX_SKEW_SECONDS = 15 * 60

LookupSecret = Callable[[str], str | None]
"""Maps an access key id to its secret key, ``None`` when the key is unknown."""


def secret_of(lookup_secret: LookupSecret, access_key: str) -> str:
    """The secret that signed with ``access_key``, or ``InvalidAccessKeyId``."""
    secret = lookup_secret(access_key)
    if secret is None:
        raise AuthError("InvalidAccessKeyId", extra={"AWSAccessKeyId": access_key})
    return secret


def signatures_equal(expected: str, claimed: str) -> bool:
    """Constant-time comparison that tolerates any text in ``claimed``."""
    return hmac.compare_digest(expected.encode(), claimed.encode("utf-8", "surrogateescape"))


def signature_mismatch(
    access_key: str, to_sign: str, provided: str, canonical: str | None = None
) -> AuthError:
    """``SignatureDoesNotMatch`` with what AWS reports to help a client find its mistake."""
    extra = {
        "AWSAccessKeyId": access_key,
        "StringToSign": to_sign,
        "SignatureProvided": provided,
        "StringToSignBytes": spaced_hex(to_sign),
    }
    if canonical is not None:
        extra["CanonicalRequest"] = canonical
        extra["CanonicalRequestBytes"] = spaced_hex(canonical)
    return AuthError("SignatureDoesNotMatch", extra=extra)


def check_skew(request_time: float, sent: str, now: float) -> None:
    """Refuse a signed request dated more than :data:`MAX_SKEW_SECONDS` from ``now``."""
    if abs(request_time - now) > MAX_SKEW_SECONDS:
        raise AuthError(
            "RequestTimeTooSkewed",
            extra={
                "RequestTime": sent,
                "ServerTime": format_iso(now),
                "MaxAllowedSkewMilliseconds": str(MAX_SKEW_SECONDS * 1000),
            },
        )


def no_request_date() -> AuthError:
    return AuthError(
        "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"
    )


def one_mechanism_only(authorization: str) -> AuthError:
    """A request signed in the ``Authorization`` header and in its query string too."""
    return AuthError(
        "InvalidArgument",
        "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
        "Signature query string parameter or the Authorization header should be specified",
        extra={"ArgumentName": "Authorization", "ArgumentValue": authorization},
    )


@lru_cache(maxsize=128)
def parse_amz_date(text: str) -> float | None:
    """``YYYYMMDDTHHMMSSZ`` -> epoch seconds, or ``None`` if it is not one."""
    digits = text[:8] + text[9:15]
    if len(text) != 16 or text[8] != "T" or text[15] != "Z" or not digits.isascii():
        return None
    if not digits.isdigit():
        return None
    try:
        when = datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            int(text[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return when.timestamp()


def parse_http_date(text: str) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def request_time_of(sent: str) -> float | None:
    """The request time a SigV2 ``Date`` or ``x-amz-date`` header gives (RFC 1123, or ISO 8601
    basic), or ``None`` when it gives none that AWS takes: unparseable, or before 1970. A date
    before the epoch is refused as a missing one is, ``AccessDenied``, not as a skewed one
    (ceph/s3-tests' ``test_*_bad_date_before_epoch_aws2``, which AWS passes; Ceph's gateway
    refuses such a date the same way), while one from 2010 or after 9999 is skewed."""
    when = parse_http_date(sent)
    if when is None:
        when = parse_amz_date(sent)
    return None if when is None or when < 0 else when


def format_amz_date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%dT%H%M%SZ")


def format_iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spaced_hex(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").hex(" ")
