"""Browser form uploads (POST Object): who signed the form, and what its policy allows.

A form carries its credentials in fields, not headers, and signs its base64 ``policy`` field
rather than a canonical request:

- SigV4: ``x-amz-algorithm`` (``AWS4-HMAC-SHA256``), ``x-amz-credential``
  (``AKID/YYYYMMDD/region/s3/aws4_request``), ``x-amz-date`` and ``x-amz-signature``, the hex
  HMAC-SHA256 of the policy under the day's signing key (:func:`sigv4.signing_key`);
- SigV2: ``AWSAccessKeyId`` and ``signature``, the base64 HMAC-SHA1 of the policy.

A form with neither is anonymous (``None`` from :func:`authenticate_form`; whether it may
write is the caller's decision). The policy is a JSON document: ``expiration`` (ISO 8601
UTC, the upload is refused after it) and ``conditions``, each one of

- ``{"field": "value"}``: the field must equal the value (``bucket``: the bucket posted to);
- ``["eq", "$field", "value"]`` and ``["starts-with", "$field", "prefix"]``;
- ``["content-length-range", min, max]``: the file's size, checked as it streams.

Field names are matched case-insensitively (condition names and operators too); the two
top-level names are case-sensitive, as AWS has them. Every form field but the signature's
own, ``policy``, ``file`` and ``x-ignore-*`` must be named by a condition. Errors are AWS's:
a malformed policy is 400 ``InvalidPolicyDocument``, a missing field 400 ``InvalidArgument``,
an expired policy or a failed condition 403 ``AccessDenied``.

Pure: no HTTP framework; fields arrive as a mapping of lower-cased names to values.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stratum.auth import sigv2, sigv4
from stratum.auth.checks import (
    LookupSecret,
    parse_amz_date,
    secret_of,
    signature_mismatch,
    signatures_equal,
)
from stratum.auth.errors import AuthError

SIGV4_ALGORITHM = "AWS4-HMAC-SHA256"
# Fields no condition needs to name: the signature's own, the policy, the file.
_EXEMPT = frozenset({"policy", "signature", "x-amz-signature", "awsaccesskeyid", "file"})
_IGNORED_PREFIX = "x-ignore-"
MAX_POLICY_CHARS = 64 * 1024


@dataclass(frozen=True, slots=True)
class Condition:
    """``op`` is ``eq`` or ``starts-with``; ``field`` lower-cased, without its ``$``."""

    op: str
    field: str
    value: str


@dataclass(frozen=True, slots=True)
class PostPolicy:
    expiration: float
    conditions: tuple[Condition, ...]
    length_range: tuple[int, int] | None = None  # inclusive bounds of the file's size


@dataclass(frozen=True, slots=True)
class SignedForm:
    """A form whose signature checked out: who signed it and the policy it signed."""

    access_key: str
    policy: PostPolicy


def _missing(name: str) -> AuthError:
    return AuthError(
        "InvalidArgument",
        f"Bucket POST must contain a field named '{name}'.  If it is specified, please check "
        f"the order of the fields.",
        extra={"ArgumentName": name, "ArgumentValue": ""},
    )


def authenticate_form(
    fields: Mapping[str, str],
    lookup_secret: LookupSecret,
    *,
    region: str,
    now: float,
    allow_sigv2: bool = True,
) -> SignedForm | None:
    """Check the form's signature and policy; ``None`` for an anonymous form (no policy and
    no credentials). The policy's conditions are checked later, against the final fields
    (:func:`check_conditions`), once the file's name is known."""
    policy_b64 = fields.get("policy")
    sigv4_form = "x-amz-signature" in fields or "x-amz-credential" in fields
    sigv2_form = "awsaccesskeyid" in fields or "signature" in fields
    if policy_b64 is None:
        if sigv4_form or sigv2_form:
            raise _missing("policy")
        return None
    if sigv4_form:
        access_key = _verify_sigv4(fields, policy_b64, lookup_secret, region, now)
    elif sigv2_form:
        if not allow_sigv2:
            raise AuthError(
                "InvalidRequest",
                "The authorization mechanism you have provided is not supported. "
                "Please use AWS4-HMAC-SHA256.",
            )
        access_key = _verify_sigv2(fields, policy_b64, lookup_secret)
    else:
        raise _missing("AWSAccessKeyId")
    policy = parse_policy(policy_b64)
    if now > policy.expiration:
        raise AuthError("AccessDenied", "Invalid according to Policy: Policy expired.")
    return SignedForm(access_key, policy)


def _verify_sigv2(fields: Mapping[str, str], policy_b64: str, lookup_secret: LookupSecret) -> str:
    access_key = fields.get("awsaccesskeyid")
    if not access_key:
        raise _missing("AWSAccessKeyId")
    signature = fields.get("signature")
    if not signature:
        raise _missing("Signature")
    expected = sigv2.sign(secret_of(lookup_secret, access_key), policy_b64)
    if not signatures_equal(expected, signature):
        raise signature_mismatch(access_key, policy_b64, signature)
    return access_key


def _verify_sigv4(
    fields: Mapping[str, str],
    policy_b64: str,
    lookup_secret: LookupSecret,
    region: str,
    now: float,
) -> str:
    for name in ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature"):
        if not fields.get(name):
            raise _missing(name)
    if fields["x-amz-algorithm"] != SIGV4_ALGORITHM:
        raise AuthError(
            "InvalidArgument",
            "Unsupported algorithm: only AWS4-HMAC-SHA256 is accepted",
            extra={"ArgumentName": "x-amz-algorithm", "ArgumentValue": fields["x-amz-algorithm"]},
        )
    access_key, date, scope_region, service, terminal = _credential(fields["x-amz-credential"])
    if scope_region != region or service != sigv4.SERVICE or terminal != sigv4.TERMINAL:
        raise AuthError(
            "InvalidArgument",
            f"The credential's scope must be {date}/{region}/{sigv4.SERVICE}/{sigv4.TERMINAL}",
            extra={"ArgumentName": "x-amz-credential", "ArgumentValue": fields["x-amz-credential"]},
        )
    if parse_amz_date(fields["x-amz-date"]) is None or not fields["x-amz-date"].startswith(date):
        raise AuthError(
            "InvalidArgument",
            "x-amz-date must be YYYYMMDDTHHMMSSZ, on the credential's day",
            extra={"ArgumentName": "x-amz-date", "ArgumentValue": fields["x-amz-date"]},
        )
    key = sigv4.signing_key(secret_of(lookup_secret, access_key), date, scope_region)
    signature = fields["x-amz-signature"]
    if not signatures_equal(sigv4.sign(key, policy_b64), signature):
        raise signature_mismatch(access_key, policy_b64, signature)
    return access_key


def _credential(credential: str) -> tuple[str, str, str, str, str]:
    parts = credential.rsplit("/", 4)
    if len(parts) != 5 or not all(parts) or not (len(parts[1]) == 8 and parts[1].isdigit()):
        raise AuthError(
            "InvalidArgument",
            "x-amz-credential must be AKID/YYYYMMDD/region/s3/aws4_request",
            extra={"ArgumentName": "x-amz-credential", "ArgumentValue": credential},
        )
    return parts[0], parts[1], parts[2], parts[3], parts[4]


# --- the policy document ------------------------------------------------------------------


def _invalid(detail: str) -> AuthError:
    return AuthError("InvalidPolicyDocument", f"Invalid Policy: {detail}")


def parse_policy(policy_b64: str) -> PostPolicy:
    """Decode and check the base64 JSON policy; ``InvalidPolicyDocument`` for any flaw."""
    if len(policy_b64) > MAX_POLICY_CHARS:
        raise _invalid("Policy is too large.")
    try:
        document = json.loads(base64.b64decode(policy_b64, validate=True))
    except (binascii.Error, ValueError):
        raise _invalid("Invalid JSON.") from None
    if not isinstance(document, dict):
        raise _invalid("Invalid JSON.")
    if "expiration" not in document:
        raise _invalid("Policy missing expiration.")
    if "conditions" not in document:
        raise _invalid("Policy missing conditions.")
    expiration = _expiration(document["expiration"])
    raw = document["conditions"]
    if not isinstance(raw, list):
        raise _invalid("Conditions must be a list.")
    conditions: list[Condition] = []
    length_range: tuple[int, int] | None = None
    for item in raw:
        if isinstance(item, list) and item and str(item[0]).lower() == "content-length-range":
            length_range = _length_range(item)
        else:
            conditions.append(_condition(item))
    return PostPolicy(expiration, tuple(conditions), length_range)


def _expiration(value: Any) -> float:
    text = value if isinstance(value, str) else ""
    for shape in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, shape).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise _invalid(f"Invalid 'expiration' value: '{value}'")


def _condition(item: Any) -> Condition:
    if isinstance(item, dict):
        if len(item) != 1:
            raise _invalid(
                "Invalid Simple-Condition: Simple-Conditions must have exactly one property "
                f"specified. {json.dumps(item)}"
            )
        ((name, value),) = item.items()
        if not isinstance(value, str):
            raise _invalid(
                f"Invalid Simple-Condition: a value must be a string. {json.dumps(item)}"
            )
        return Condition("eq", str(name).lower(), value)
    if isinstance(item, list) and len(item) == 3:
        op, name, value = item
        op = str(op).lower()
        named = isinstance(name, str) and name.startswith("$")
        if op in ("eq", "starts-with") and named and isinstance(value, str):
            return Condition(op, name[1:].lower(), value)
    raise _invalid(f"Invalid Condition: {json.dumps(item)}")


def _length_range(item: list[Any]) -> tuple[int, int]:
    if len(item) != 3:
        raise _invalid("Invalid content-length-range: it takes a minimum and a maximum.")
    try:
        low, high = int(item[1]), int(item[2])
    except (TypeError, ValueError):
        raise _invalid("Invalid content-length-range: bounds must be integers.") from None
    if low < 0 or high < low:
        raise _invalid("Invalid content-length-range: bounds out of order or negative.")
    return low, high


def check_conditions(policy: PostPolicy, fields: Mapping[str, str], bucket: str) -> None:
    """Every condition holds on ``fields`` (lower-cased names, ``key`` after ``${filename}``;
    a ``bucket`` condition is about ``bucket``, the bucket posted to), and every field is
    named by one: else 403 ``AccessDenied``."""
    for condition in policy.conditions:
        value = bucket if condition.field == "bucket" else fields.get(condition.field, "")
        if condition.op == "eq":
            held = value == condition.value
        elif condition.field == "content-type":  # several types, each must match
            held = all(t.strip().startswith(condition.value) for t in value.split(","))
        else:
            held = value.startswith(condition.value)
        if not held:
            raise AuthError(
                "AccessDenied",
                f'Invalid according to Policy: Policy Condition failed: ["{condition.op}", '
                f'"${condition.field}", "{condition.value}"]',
            )
    named = {c.field for c in policy.conditions}
    extra = [
        name
        for name in fields
        if name not in named and name not in _EXEMPT and not name.startswith(_IGNORED_PREFIX)
    ]
    if extra:
        raise AuthError(
            "AccessDenied", f"Invalid according to Policy: Extra input fields: {', '.join(extra)}"
        )
