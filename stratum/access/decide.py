"""The access decision: may this principal do this operation on this bucket or object?

Inputs are what the bucket's own record holds (:class:`BucketAccess`: owner, ACL, policy,
public access block, object ownership), the request's facts for policy conditions
(:class:`RequestFacts`) and, for object operations that need it, the object's owner, ACL
and tags (:class:`ObjectFacts`). No metadata is read here.

The order, as S3's:

1. a bucket policy statement that denies wins over everything (the owner keeps the right
   to manage the policy itself, :data:`~stratum.access.actions.POLICY_ADMIN`);
2. the bucket owner may do anything to the bucket and to the objects it owns, and, when
   :data:`BUCKET_OWNER_ENFORCED` is set, owns every object;
3. a policy statement that allows grants (with ``RestrictPublicBuckets`` on, a public
   policy grants nothing to anyone but the owner);
4. an ACL grants: the bucket's for bucket and write operations, the object's for object
   reads and ACL operations (ACLs count for nothing under ``BucketOwnerEnforced``; grants
   to the public groups nothing under ``IgnorePublicAcls``);
5. anything else is denied.

An object operation whose answer depends on the object (its ACL, or a policy condition on
its tags) answers :data:`NEEDS_OBJECT` until the caller passes the object in.
"""

from __future__ import annotations

import enum
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stratum.access import acl as acls
from stratum.access import policy as policies
from stratum.access.actions import POLICY_ADMIN, Level, OperationAccess
from stratum.access.conditions import OBJECT_TAG_PREFIX, NeedsObject

OBJECT_WRITER = "ObjectWriter"
BUCKET_OWNER_PREFERRED = "BucketOwnerPreferred"
BUCKET_OWNER_ENFORCED = "BucketOwnerEnforced"
OWNERSHIPS = (OBJECT_WRITER, BUCKET_OWNER_PREFERRED, BUCKET_OWNER_ENFORCED)

PAB_FIELDS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    NEEDS_OBJECT = "needs-object"


@dataclass(frozen=True, slots=True)
class PublicAccessBlock:
    """The bucket's public access block; all false when none is set."""

    block_public_acls: bool = False
    ignore_public_acls: bool = False
    block_public_policy: bool = False
    restrict_public_buckets: bool = False

    @classmethod
    def load(cls, stored: Mapping[str, Any] | None) -> PublicAccessBlock:
        if not stored:
            return NO_BLOCK
        return cls(*(bool(stored.get(name, False)) for name in PAB_FIELDS))

    def stored(self) -> dict[str, Any]:
        """Stored form (``settings["public_access_block"]``), format 1: the four flags."""
        return {
            "v": 1,
            "BlockPublicAcls": self.block_public_acls,
            "IgnorePublicAcls": self.ignore_public_acls,
            "BlockPublicPolicy": self.block_public_policy,
            "RestrictPublicBuckets": self.restrict_public_buckets,
        }


NO_BLOCK = PublicAccessBlock()


@dataclass(frozen=True, slots=True)
class BucketAccess:
    """What a bucket's record says about access, parsed (see :func:`bucket_access`)."""

    name: str
    owner: str
    acl: acls.Acl
    policy: policies.Policy | None
    block: PublicAccessBlock
    ownership: str  # "" when no ownership controls are set (objects are their writer's)

    @property
    def acls_enabled(self) -> bool:
        return self.ownership != BUCKET_OWNER_ENFORCED

    @property
    def public(self) -> bool:
        """GetBucketPolicyStatus's IsPublic: a public policy or (counted) public ACL."""
        policy_public = self.policy is not None and self.policy.public
        acl_public = self.acls_enabled and not self.block.ignore_public_acls and self.acl.public
        return policy_public or acl_public


def bucket_access(name: str, owner: str, settings: Mapping[str, Any]) -> BucketAccess:
    """Parse the access settings a bucket record holds (the policy is parsed once per text)."""
    stored_policy = settings.get("policy")
    ownership = settings.get("ownership") or {}
    return BucketAccess(
        name=name,
        owner=owner,
        acl=acls.load(settings.get("acl"), owner),
        policy=None if stored_policy is None else policies.from_stored(stored_policy, name),
        block=PublicAccessBlock.load(settings.get("public_access_block")),
        ownership=str(ownership.get("rule", "")),
    )


@dataclass(frozen=True, slots=True)
class ObjectFacts:
    """What an object (version) offers a decision: its owner, ACL (stored form) and tags."""

    owner: str
    acl: Mapping[str, Any]
    tags: Mapping[str, str]


@dataclass
class RequestFacts:
    """The request's side of policy conditions (see :mod:`stratum.access.conditions`).

    ``headers`` must answer lower-case names (aiohttp's headers do, case-insensitively).
    ``list_prefix``: the ``s3:prefix`` to use instead of the query's (the key of a read
    whose missing object is answered 404 only to those who may list it).
    """

    principal: str | None
    source_ip: str
    secure: bool
    now: float
    headers: Mapping[str, str]
    params: Mapping[str, str]
    signature_version: str = ""  # "AWS4-HMAC-SHA256" | "AWS" | ""
    auth_type: str = ""  # "REST-HEADER" | "REST-QUERY-STRING" | "POST" | ""
    list_prefix: str | None = None
    # the object's tags once read; None: not read (a condition on them must wait)
    object_tags: Mapping[str, str] | None = None
    object_read: bool = False
    _cache: dict[str, Sequence[str] | None] = field(default_factory=dict, init=False, repr=False)
    # (action, resource) -> the policy's (denies, allows), once evaluated without the object
    verdicts: dict[tuple[str, str], tuple[bool, bool]] = field(
        default_factory=dict, init=False, repr=False
    )

    def lookup(self, key: str) -> Sequence[str] | None:
        if key.startswith(OBJECT_TAG_PREFIX):
            if not self.object_read:
                raise NeedsObject(key)
            tags = self.object_tags or {}
            value = tags.get(key[len(OBJECT_TAG_PREFIX) :])
            return None if value is None else [value]
        if key in self._cache:
            return self._cache[key]
        found = self._compute(key)
        self._cache[key] = found
        return found

    def _compute(self, key: str) -> Sequence[str] | None:
        service, _, name = key.partition(":")
        if service == "aws":
            return self._global(name)
        if name in ("prefix", "delimiter", "max-keys"):
            if name == "prefix" and self.list_prefix is not None:
                return [self.list_prefix]
            value = self.params.get(name)
            return None if value is None else [value]
        if name == "versionid":
            value = self.params.get("versionId")
            return None if value is None else [value]
        if name == "signatureversion":
            return [self.signature_version] if self.signature_version else None
        if name == "authtype":
            return [self.auth_type] if self.auth_type else None
        if name.startswith("requestobjecttag/"):
            return self._request_tags().get(name[len("requestobjecttag/") :])
        if name == "requestobjecttagkeys":
            keys = list(self._request_tags())
            return keys or None
        if name.startswith("x-amz-"):
            value = self.headers.get(name)
            return None if value is None else [value]
        return None

    def _global(self, name: str) -> Sequence[str] | None:
        if name == "sourceip":
            return [self.source_ip] if self.source_ip else None
        if name == "securetransport":
            return ["true" if self.secure else "false"]
        if name == "currenttime":
            return [datetime.fromtimestamp(self.now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")]
        if name == "epochtime":
            return [str(int(self.now))]
        if name == "referer":
            value = self.headers.get("referer")
            return None if value is None else [value]
        if name == "useragent":
            value = self.headers.get("user-agent")
            return None if value is None else [value]
        if name in ("userid", "principalaccount"):
            return None if self.principal is None else [self.principal]
        if name == "principaltype":
            return ["Anonymous" if self.principal is None else "Account"]
        return None

    def _request_tags(self) -> dict[str, list[str]]:
        header = self.headers.get("x-amz-tagging")
        if not header:
            return {}
        out: dict[str, list[str]] = {}
        for k, v in urllib.parse.parse_qsl(header, keep_blank_values=True):
            out.setdefault(k, []).append(v)
        return out

    def with_object(self, obj: ObjectFacts | None) -> RequestFacts:
        """These facts with the object read (``None``: there is no such object)."""
        self.object_read = True
        self.object_tags = None if obj is None else obj.tags
        return self


def decide(
    op: OperationAccess,
    bucket: BucketAccess,
    key: str | None,
    version_id: str | None,
    facts: RequestFacts,
    obj: ObjectFacts | None = None,
) -> Decision:
    """The decision for ``op`` on ``bucket`` (and ``key``); see the module docstring.

    Pass ``obj`` (and ``facts.with_object``) once the object is read; an object operation
    on a key that does not exist decides with ``obj=None`` after ``facts.with_object(None)``.
    """
    principal = facts.principal
    action = op.action_for(version_id)
    allowed = False
    if bucket.policy is not None:
        resource = policies.resource_arn(bucket.name, key)
        verdict = facts.verdicts.get((action, resource))
        if verdict is None:
            try:
                verdict = bucket.policy.evaluate(principal, action, resource, facts.lookup)
            except NeedsObject:
                return Decision.NEEDS_OBJECT
            facts.verdicts[(action, resource)] = verdict
        denied, allowed = verdict
        if denied and not (principal == bucket.owner and action in POLICY_ADMIN):
            return Decision.DENY
        if (
            allowed
            and principal != bucket.owner
            and bucket.block.restrict_public_buckets
            and bucket.policy.public
        ):
            allowed = False
    owner = principal is not None and principal == bucket.owner
    object_acl_decides = op.level is Level.OBJECT and op.acl is not None and bucket.acls_enabled
    if owner and not object_acl_decides:
        return Decision.ALLOW
    if allowed:
        return Decision.ALLOW
    if op.acl is None or not bucket.acls_enabled:
        return Decision.DENY
    ignore_public = bucket.block.ignore_public_acls
    if op.level is not Level.OBJECT:
        granted = bucket.acl.allows(principal, op.acl, ignore_public=ignore_public)
        return Decision.ALLOW if granted else Decision.DENY
    if not facts.object_read:
        return Decision.NEEDS_OBJECT
    if obj is None:
        return Decision.DENY
    object_acl = acls.load(obj.acl, obj.owner)
    granted = object_acl.allows(principal, op.acl, ignore_public=ignore_public)
    return Decision.ALLOW if granted else Decision.DENY
