"""Bucket policies: the IAM policy language subset S3 servers take, parsed once, checked as
AWS checks it, and evaluated in memory (pure).

A policy is JSON: ``Version`` (``2012-10-17`` or ``2008-10-17``, optional), ``Id``
(optional) and ``Statement`` (one or a list), each with ``Sid`` (optional), ``Effect``
(``Allow``/``Deny``), ``Principal`` or (with ``Deny`` only) ``NotPrincipal``, ``Action`` or
``NotAction``, ``Resource`` or ``NotResource``, and ``Condition`` (see
:mod:`stratum.access.conditions`).

- Principals: ``"*"`` or ``{"AWS": "*"}`` is everyone, anonymous requests included; a
  Stratum user is named by canonical id (``{"CanonicalUser": id}``, ``{"AWS": id}``) or by
  an ARN whose account is that id (``arn:aws:iam::<id>:root``, ``arn:aws:iam::<id>:user/x``).
  ARNs of accounts Stratum does not know are taken and match no one; ``{"Service": ...}``
  likewise.
- Actions: ``s3:<Name>`` with ``*``/``?`` wildcards, case-insensitive, or ``*``; a name
  without wildcards must be an S3 action.
- Resources: ``arn:aws:s3:::<bucket>[/<key pattern>]`` (wildcards allowed, case-sensitive)
  or ``*``; each must be able to name the policy's own bucket (else ``Policy has invalid
  resource``, as AWS).

:meth:`Policy.evaluate` answers whether a statement denies and whether one allows; the
caller lets a deny win. Anything malformed raises :class:`PolicyError` (``MalformedPolicy``).
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from stratum.access import conditions
from stratum.access.conditions import Condition, Lookup
from stratum.access.errors import PolicyError

MAX_POLICY_BYTES = 20 * 1024
VERSIONS = ("2012-10-17", "2008-10-17")
ARN_PREFIX = "arn:aws:s3:::"

S3_ACTIONS = frozenset(
    name.lower()
    for name in (
        "AbortMultipartUpload",
        "BypassGovernanceRetention",
        "CreateBucket",
        "DeleteBucket",
        "DeleteBucketOwnershipControls",
        "DeleteBucketPolicy",
        "DeleteBucketWebsite",
        "DeleteObject",
        "DeleteObjectTagging",
        "DeleteObjectVersion",
        "DeleteObjectVersionTagging",
        "GetAccelerateConfiguration",
        "GetAnalyticsConfiguration",
        "GetBucketAcl",
        "GetBucketCORS",
        "GetBucketLocation",
        "GetBucketLogging",
        "GetBucketNotification",
        "GetBucketObjectLockConfiguration",
        "GetBucketOwnershipControls",
        "GetBucketPolicy",
        "GetBucketPolicyStatus",
        "GetBucketPublicAccessBlock",
        "GetBucketRequestPayment",
        "GetBucketTagging",
        "GetBucketVersioning",
        "GetBucketWebsite",
        "GetEncryptionConfiguration",
        "GetInventoryConfiguration",
        "GetLifecycleConfiguration",
        "GetMetricsConfiguration",
        "GetObject",
        "GetObjectAcl",
        "GetObjectAttributes",
        "GetObjectLegalHold",
        "GetObjectRetention",
        "GetObjectTagging",
        "GetObjectTorrent",
        "GetObjectVersion",
        "GetObjectVersionAcl",
        "GetObjectVersionAttributes",
        "GetObjectVersionTagging",
        "GetObjectVersionTorrent",
        "GetReplicationConfiguration",
        "ListAllMyBuckets",
        "ListBucket",
        "ListBucketMultipartUploads",
        "ListBucketVersions",
        "ListMultipartUploadParts",
        "ObjectOwnerOverrideToBucketOwner",
        "PutAccelerateConfiguration",
        "PutBucketAcl",
        "PutBucketCORS",
        "PutBucketLogging",
        "PutBucketNotification",
        "PutBucketObjectLockConfiguration",
        "PutBucketOwnershipControls",
        "PutBucketPolicy",
        "PutBucketPublicAccessBlock",
        "PutBucketRequestPayment",
        "PutBucketTagging",
        "PutBucketVersioning",
        "PutBucketWebsite",
        "PutEncryptionConfiguration",
        "PutLifecycleConfiguration",
        "PutMetricsConfiguration",
        "PutObject",
        "PutObjectAcl",
        "PutObjectLegalHold",
        "PutObjectRetention",
        "PutObjectTagging",
        "PutObjectVersionAcl",
        "PutObjectVersionTagging",
        "PutReplicationConfiguration",
        "ReplicateDelete",
        "ReplicateObject",
        "ReplicateTags",
        "RestoreObject",
    )
)

_TOP_FIELDS = frozenset({"Version", "Id", "Statement"})
_STATEMENT_FIELDS = frozenset(
    {
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    }
)
_ACTION_NAME = re.compile(r"[A-Za-z*?]+")
_IAM_ARN = re.compile(r"arn:aws:iam::([^:]*):(root|user/.+|role/.+)")


@dataclass(frozen=True, slots=True)
class Principals:
    """Who a ``Principal`` names: everyone, or a set of canonical ids."""

    everyone: bool
    ids: frozenset[str]

    def match(self, principal: str | None) -> bool:
        return self.everyone or (principal is not None and principal in self.ids)


def _any_of(patterns: list[str], flags: int = 0) -> re.Pattern[str]:
    """One regular expression matching a whole string against any of the patterns."""
    alternatives = "|".join(f"(?:{conditions.like_regex(p)})" for p in patterns)
    return re.compile(alternatives, re.DOTALL | flags)


@dataclass(slots=True)
class Statement:
    sid: str
    allow: bool
    principals: Principals
    not_principal: bool
    actions: re.Pattern[str]  # Action (or NotAction) patterns, case-insensitive
    not_action: bool
    resources: re.Pattern[str]  # Resource (or NotResource) patterns
    not_resource: bool
    conditions: tuple[Condition, ...]

    def covers_action(self, action: str) -> bool:
        return (self.actions.fullmatch(action) is not None) != self.not_action

    def applies(self, principal: str | None, resource: str, lookup: Lookup) -> bool:
        """Whether the statement applies to the request (its action already covered)."""
        who = self.principals
        named = who.everyone or (principal is not None and principal in who.ids)
        if named == self.not_principal:
            return False
        if (self.resources.fullmatch(resource) is None) != self.not_resource:
            return False
        return all(c.holds(lookup) for c in self.conditions) if self.conditions else True

    @property
    def public(self) -> bool:
        """An Allow to everyone not pinned down by a condition on where it comes from."""
        if not self.allow or self.not_principal or not self.principals.everyone:
            return False
        return not any(c.key in _FIXING_KEYS and not c.negated for c in self.conditions)

    @property
    def needs_object(self) -> bool:
        return any(c.needs_object for c in self.conditions)


# Condition keys that make an Allow to "*" non-public when fixed (AWS's list, as far as
# Stratum has the keys).
_FIXING_KEYS = frozenset({"aws:sourceip", "aws:userid", "aws:username", "aws:principalaccount"})


@dataclass(frozen=True, slots=True)
class Policy:
    text: str
    statements: tuple[Statement, ...]
    # action -> the statements whose Action element covers it, and one expression matching
    # any resource a Resource element of theirs names (computed once per action)
    _by_action: dict[str, tuple[tuple[Statement, ...], re.Pattern[str] | None]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def _covering(self, action: str) -> tuple[tuple[Statement, ...], re.Pattern[str] | None]:
        found = self._by_action.get(action)
        if found is None:
            covering = tuple(s for s in self.statements if s.covers_action(action))
            # With a NotResource among them, any resource may concern one: no shortcut.
            union = None
            if covering and not any(s.not_resource for s in covering):
                union = re.compile(
                    "|".join(f"(?:{s.resources.pattern})" for s in covering), re.DOTALL
                )
            found = (covering, union)
            self._by_action[action] = found
        return found

    def evaluate(
        self, principal: str | None, action: str, resource: str, lookup: Lookup
    ) -> tuple[bool, bool]:
        """(a statement denies, a statement allows) this request.

        ``lookup`` gives the request's condition values; it may raise
        :class:`~stratum.access.conditions.NeedsObject` when a condition asks for the
        object's tags before the object was read. A resource no statement names is answered
        with one match of their resources' union, however many statements there are.
        """
        covering, union = self._covering(action)
        if union is not None and union.fullmatch(resource) is None:
            return False, False
        allowed = False
        for statement in covering:
            if statement.allow and allowed:
                continue  # another Allow changes nothing; only a Deny still could
            if statement.applies(principal, resource, lookup):
                if not statement.allow:
                    return True, allowed
                allowed = True
        return False, allowed

    @property
    def public(self) -> bool:
        return any(s.public for s in self.statements)


def stored(text: str) -> dict[str, Any]:
    """The stored form of a policy (``settings["policy"]``), format 1: the text exactly as
    sent, deflated and base64-encoded, ``{"v": 1, "deflate": "<base64>"}``. The bucket's
    record is decoded on every request to the bucket; a policy's text, quotes escaped in
    JSON, would make that decoding cost several times what the rest of the record does."""
    packed = base64.b64encode(zlib.compress(text.encode("utf-8", "surrogatepass"), 9))
    return {"v": 1, "deflate": packed.decode("ascii")}


def text_of(value: Any) -> str:
    """The policy text a stored value holds (as sent to PutBucketPolicy)."""
    if isinstance(value, str):  # written by the first release of policies: the text itself
        return value
    if not isinstance(value, dict) or value.get("v") != 1:
        raise ValueError(f"unsupported stored policy {value!r:.40}")
    return zlib.decompress(base64.b64decode(value["deflate"])).decode("utf-8", "surrogatepass")


def from_stored(value: Any, bucket: str) -> Policy:
    """The policy a stored value holds, parsed (once per stored value and bucket)."""
    if isinstance(value, dict):
        return _from_packed(str(value.get("deflate")), bucket, value.get("v"))
    return parse(text_of(value), bucket)


@lru_cache(maxsize=256)
def _from_packed(packed: str, bucket: str, version: Any) -> Policy:
    return parse(text_of({"v": version, "deflate": packed}), bucket)


def parse(text: str, bucket: str) -> Policy:
    """Check and compile the policy ``text`` for ``bucket``; raise :class:`PolicyError`."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise PolicyError("Policy exceeds the maximum allowed document size.")
    return _parse_cached(text, bucket)


@lru_cache(maxsize=256)
def _parse_cached(text: str, bucket: str) -> Policy:
    """Parsed once per (text, bucket) and shared: a stored policy is read with every request
    to its bucket. Statements are not changed after parsing but for their action cache."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        raise PolicyError("Policies must be valid JSON and the first byte must be '{'")
    for name in document:
        if name not in _TOP_FIELDS:
            raise PolicyError(f"Unknown field {name}")
    version = document.get("Version", "2008-10-17")
    if version not in VERSIONS:
        raise PolicyError("The policy must contain a valid version string")
    raw_statements = document.get("Statement")
    if raw_statements is None:
        raise PolicyError("Missing required field Statement")
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise PolicyError("Missing required field Statement")
    statements = tuple(_statement(s, bucket) for s in raw_statements)
    sids = [s.sid for s in statements if s.sid]
    if len(sids) != len(set(sids)):
        raise PolicyError("Statement IDs (SID) in a single policy must be unique")
    return Policy(text, statements)


def _statement(raw: Any, bucket: str) -> Statement:
    if not isinstance(raw, dict):
        raise PolicyError("Statement must be an object")
    for name in raw:
        if name not in _STATEMENT_FIELDS:
            raise PolicyError(f"Unknown field {name}")
    sid = raw.get("Sid", "")
    if not isinstance(sid, str):
        raise PolicyError("Sid must be a string")
    effect = raw.get("Effect")
    if effect is None:
        raise PolicyError("Missing required field Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"Invalid effect: {effect}")
    principal_field, not_principal = _one_of(raw, "Principal", "NotPrincipal")
    if not_principal and effect == "Allow":
        raise PolicyError("NotPrincipal is supported only with Deny")
    action_field, not_action = _one_of(raw, "Action", "NotAction")
    resource_field, not_resource = _one_of(raw, "Resource", "NotResource")
    condition_block = raw.get("Condition")
    return Statement(
        sid=sid,
        allow=effect == "Allow",
        principals=_principals(principal_field),
        not_principal=not_principal,
        actions=_any_of(
            [_checked_action(a) for a in _strings(action_field, "Action")], re.IGNORECASE
        ),
        not_action=not_action,
        resources=_any_of(
            [_checked_resource(r, bucket) for r in _strings(resource_field, "Resource")]
        ),
        not_resource=not_resource,
        conditions=() if condition_block is None else conditions.parse_block(condition_block),
    )


def _one_of(raw: dict[str, Any], name: str, negated: str) -> tuple[Any, bool]:
    if name in raw and negated in raw:
        raise PolicyError(f"Statement holds both {name} and {negated}")
    if name in raw:
        return raw[name], False
    if negated in raw:
        return raw[negated], True
    raise PolicyError(f"Missing required field {name}")


def _strings(value: Any, what: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) for i in items):
        raise PolicyError(f"Policy has invalid {what.lower()}")
    return items


def _principals(value: Any) -> Principals:
    if value == "*":
        return Principals(True, frozenset())
    if not isinstance(value, dict) or not value:
        raise PolicyError("Invalid principal in policy")
    ids: set[str] = set()
    everyone = False
    for kind, names in value.items():
        if kind not in ("AWS", "CanonicalUser", "Service", "Federated"):
            raise PolicyError("Invalid principal in policy")
        for name in _strings(names, "Principal"):
            if name == "*" and kind == "AWS":
                everyone = True
            elif kind == "CanonicalUser":
                ids.add(name)
            elif kind == "AWS":
                arn = _IAM_ARN.fullmatch(name)
                if arn is not None:
                    ids.add(arn.group(1))
                elif name and ":" not in name:
                    ids.add(name)  # a bare account id: a Stratum canonical id
                else:
                    raise PolicyError("Invalid principal in policy")
    return Principals(everyone, frozenset(ids))


def _checked_action(action: str) -> str:
    if action == "*":
        return action
    service, sep, name = action.partition(":")
    if not sep or service.lower() != "s3" or not _ACTION_NAME.fullmatch(name):
        raise PolicyError("Policy has invalid action")
    if "*" not in name and "?" not in name and name.lower() not in S3_ACTIONS:
        raise PolicyError("Policy has invalid action")
    return action


def _checked_resource(resource: str, bucket: str) -> str:
    if resource == "*":
        return resource
    if not resource.startswith(ARN_PREFIX):
        raise PolicyError("Policy has invalid resource")
    bucket_part = resource[len(ARN_PREFIX) :].partition("/")[0]
    if not bucket_part or _any_of([bucket_part]).fullmatch(bucket) is None:
        raise PolicyError("Policy has invalid resource")
    return resource


def resource_arn(bucket: str, key: str | None) -> str:
    """The ARN a request's resource is known by: the bucket, or one object of it."""
    return f"{ARN_PREFIX}{bucket}" if key is None else f"{ARN_PREFIX}{bucket}/{key}"
