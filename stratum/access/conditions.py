"""A policy statement's ``Condition`` block: operators, keys and what a request offers them.

``{"StringLike": {"s3:prefix": ["photos/*", "public/*"]}}`` is one :class:`Condition` per
(operator, key): true when the request's value for the key matches any of the listed
values. Operator families: ``String*`` (``Equals``, ``NotEquals``, ``EqualsIgnoreCase``,
``NotEqualsIgnoreCase``, ``Like``, ``NotLike``), ``Numeric*``, ``Date*``, ``Bool``,
``IpAddress``/``NotIpAddress``, ``Null``, each but ``Null`` with an ``IfExists`` form; set
prefixes ``ForAnyValue:``/``ForAllValues:`` for keys with several values.

A key the request does not carry makes a condition false, except: an ``IfExists`` operator
and the negated operators (``StringNotEquals``...) are true then, and ``Null`` tests exactly
for that. Keys are case-insensitive (``s3:ExistingObjectTag/<tag>``'s tag key is not).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from stratum.access.errors import PolicyError

Values = Sequence[str]
# what a request offers a condition: the values of a key, None when it has none
Lookup = Callable[[str], Values | None]

KNOWN_KEYS = frozenset(
    {
        "aws:sourceip",
        "aws:securetransport",
        "aws:currenttime",
        "aws:epochtime",
        "aws:referer",
        "aws:useragent",
        "aws:userid",
        "aws:username",
        "aws:principaltype",
        "aws:principalaccount",
        "s3:prefix",
        "s3:delimiter",
        "s3:max-keys",
        "s3:versionid",
        "s3:x-amz-acl",
        "s3:x-amz-copy-source",
        "s3:x-amz-metadata-directive",
        "s3:x-amz-server-side-encryption",
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
        "s3:x-amz-storage-class",
        "s3:x-amz-content-sha256",
        "s3:x-amz-grant-read",
        "s3:x-amz-grant-write",
        "s3:x-amz-grant-read-acp",
        "s3:x-amz-grant-write-acp",
        "s3:x-amz-grant-full-control",
        "s3:signatureversion",
        "s3:signatureage",
        "s3:authtype",
        "s3:tlsversion",
        "s3:locationconstraint",
        "s3:object-lock-mode",
        "s3:object-lock-retain-until-date",
        "s3:object-lock-legal-hold",
        "s3:object-lock-remaining-retention-days",
        "s3:requestobjecttagkeys",
    }
)
TAG_KEY_PREFIXES = ("s3:existingobjecttag/", "s3:requestobjecttag/", "aws:requesttag/")
OBJECT_TAG_PREFIX = "s3:existingobjecttag/"


class NeedsObject(Exception):
    """Raised by a lookup asked for a key that only the object itself can answer
    (``s3:ExistingObjectTag/...``) before the object was read."""


def like_regex(pattern: str) -> str:
    """The regular expression of a ``*``/``?`` pattern: ``*`` any run, ``?`` any one
    character, the rest literal (``StringLike``, actions, resources)."""
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"not a number: {text}") from None


def _date(text: str) -> float:
    text = text.strip()
    if text.replace(".", "", 1).isdigit():
        return float(text)  # epoch seconds are a date too
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a date: {text}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


Test = Callable[[str], bool]


def _string_tests(op: str, wanted: Values) -> tuple[Test, bool]:
    """(test of one request value, negated) for a String* operator."""
    if op in ("StringEquals", "StringNotEquals"):
        exact = frozenset(wanted)
        return exact.__contains__, op == "StringNotEquals"
    if op in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        folded = frozenset(w.casefold() for w in wanted)
        return (lambda v: v.casefold() in folded), op.startswith("StringNot")
    patterns = [re.compile(like_regex(w), re.DOTALL) for w in wanted]
    return (lambda v: any(p.fullmatch(v) for p in patterns)), op == "StringNotLike"


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "Equals": float.__eq__,
    "NotEquals": float.__eq__,  # negated below
    "LessThan": float.__lt__,
    "LessThanEquals": float.__le__,
    "GreaterThan": float.__gt__,
    "GreaterThanEquals": float.__ge__,
}


def _ordered_tests(family: str, rest: str, wanted: Values) -> tuple[Test, bool]:
    if rest not in _COMPARE:
        raise PolicyError(f"Invalid Condition type : {family}{rest}")
    parse = _number if family == "Numeric" else _date
    try:
        targets = [parse(w) for w in wanted]
    except ValueError as exc:
        raise PolicyError(f"Invalid Condition value: {exc}") from None
    compare = _COMPARE[rest]

    def test(value: str) -> bool:
        try:
            got = parse(value)
        except ValueError:
            return False
        return any(compare(got, t) for t in targets)

    return test, rest == "NotEquals"


def _ip_tests(op: str, wanted: Values) -> tuple[Test, bool]:
    try:
        networks = [ipaddress.ip_network(w.strip(), strict=False) for w in wanted]
    except ValueError:
        raise PolicyError("Invalid Condition value: not an IP address or CIDR range") from None

    def test(value: str) -> bool:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        return any(address in n for n in networks)

    return test, op == "NotIpAddress"


def _bool_tests(wanted: Values) -> tuple[Test, bool]:
    folded = frozenset(w.lower() for w in wanted)
    return (lambda v: v.lower() in folded), False


@dataclass(frozen=True, slots=True)
class Condition:
    operator: str
    key: str  # lower-cased, but a tag key keeps its case after the "/"
    test: Test
    negated: bool
    if_exists: bool
    null_wanted: bool | None  # Null: true = the key must be absent, false = present
    set_mode: str  # "" | "any" | "all"

    def holds(self, lookup: Lookup) -> bool:
        values = lookup(self.key)
        if self.null_wanted is not None:
            return (values is None) is self.null_wanted
        if values is None:
            return self.if_exists or self.negated
        if self.set_mode == "all":
            matched = all(self.test(v) for v in values)
        else:
            matched = any(self.test(v) for v in values)
        return not matched if self.negated else matched

    @property
    def needs_object(self) -> bool:
        return self.key.startswith(OBJECT_TAG_PREFIX)


def normal_key(key: str) -> str:
    """Condition keys compare case-insensitively; a tag's own key keeps its case."""
    lowered = key.lower()
    for prefix in TAG_KEY_PREFIXES:
        if lowered.startswith(prefix):
            return prefix + key[len(prefix) :]
    return lowered


def parse_block(block: object) -> tuple[Condition, ...]:
    """A statement's ``Condition`` value, checked and compiled."""
    if not isinstance(block, dict):
        raise PolicyError("Condition must be an object")
    out: list[Condition] = []
    for raw_op, keys in block.items():
        if not isinstance(keys, dict):
            raise PolicyError(f"Invalid Condition block for {raw_op}")
        for raw_key, raw_values in keys.items():
            out.append(_condition(str(raw_op), str(raw_key), raw_values))
    return tuple(out)


def _condition(raw_op: str, raw_key: str, raw_values: object) -> Condition:
    set_mode = ""
    op = raw_op
    for prefix, mode in (("ForAnyValue:", "any"), ("ForAllValues:", "all")):
        if op.startswith(prefix):
            set_mode, op = mode, op[len(prefix) :]
    if_exists = op.endswith("IfExists") and op != "IfExists"
    if if_exists:
        op = op[: -len("IfExists")]
    key = normal_key(raw_key)
    if key not in KNOWN_KEYS and not key.startswith(TAG_KEY_PREFIXES):
        raise PolicyError(f"Policy has an invalid condition key: {raw_key}")
    values = _values(raw_values)
    null_wanted: bool | None = None
    if op.startswith("String") and op in (
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
    ):
        test, negated = _string_tests(op, values)
    elif op.startswith("Numeric"):
        test, negated = _ordered_tests("Numeric", op[len("Numeric") :], values)
    elif op.startswith("Date"):
        test, negated = _ordered_tests("Date", op[len("Date") :], values)
    elif op == "Bool":
        test, negated = _bool_tests(values)
    elif op in ("IpAddress", "NotIpAddress"):
        test, negated = _ip_tests(op, values)
    elif op == "Null" and not if_exists:
        if len(values) != 1 or values[0].lower() not in ("true", "false"):
            raise PolicyError("Invalid Condition value: Null takes true or false")
        test, negated, null_wanted = _bool_tests(values)[0], False, values[0].lower() == "true"
    else:
        raise PolicyError(f"Invalid Condition type : {raw_op}")
    return Condition(raw_op, key, test, negated, if_exists, null_wanted, set_mode)


def _values(raw: object) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str | int | float):
            out.append(str(item))
        else:
            raise PolicyError("Invalid Condition value: values are strings, numbers or booleans")
    if not out:
        raise PolicyError("Invalid Condition value: no value given")
    return out
