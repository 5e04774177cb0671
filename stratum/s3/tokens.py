"""Continuation tokens (ListObjectsV2, ListBuckets): the name to resume after, in URL-safe
base64 without padding. Opaque to clients as AWS's are; a token that does not decode is
AWS's InvalidArgument."""

from __future__ import annotations

import base64
import binascii

from stratum.s3.errors import S3Error


def encode_token(key: str) -> str:
    raw = key.encode("utf-8", "surrogateescape")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> str:
    try:
        # validate: without it b64decode skips foreign characters and any junk "decodes"
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        return raw.decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        raise S3Error(
            "InvalidArgument",
            "The continuation token provided is incorrect",
            extra={"ArgumentName": "continuation-token", "ArgumentValue": token},
        ) from None
