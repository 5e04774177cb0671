"""Access control lists: an owner and up to 100 grants, canned or spelled out (pure).

A grant gives one grantee one permission: ``READ``, ``WRITE``, ``READ_ACP``, ``WRITE_ACP``
or ``FULL_CONTROL`` (all four). A grantee is a Stratum user by canonical id or one of S3's
groups: ``AllUsers`` (anyone, signed or not) and ``AuthenticatedUsers`` (any signed request);
``LogDelivery`` is kept and shown but grants nothing here (Stratum delivers no logs).

Stored form (``BucketRecord.settings["acl"]``, ``ObjectRecord.acl``), format 1::

    {"v": 1, "owner": "<canonical id>", "grants": [["id" | "group", "<id or URI>", "READ"], ...]}

An absent or empty value is the canned ``private`` ACL of the bucket's or object's owner
(one ``FULL_CONTROL`` grant to the owner), so a bucket or object that never had an ACL set
costs nothing to store or read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

FORMAT = 1
MAX_GRANTS = 100

READ = "READ"
WRITE = "WRITE"
READ_ACP = "READ_ACP"
WRITE_ACP = "WRITE_ACP"
FULL_CONTROL = "FULL_CONTROL"
PERMISSIONS = (READ, WRITE, READ_ACP, WRITE_ACP, FULL_CONTROL)

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
GROUPS = (ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY)
PUBLIC_GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS})

CANNED = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "aws-exec-read",
    "log-delivery-write",
)

# x-amz-grant-* request headers and the permission each one grants
GRANT_HEADERS = {
    "x-amz-grant-read": READ,
    "x-amz-grant-write": WRITE,
    "x-amz-grant-read-acp": READ_ACP,
    "x-amz-grant-write-acp": WRITE_ACP,
    "x-amz-grant-full-control": FULL_CONTROL,
}


class AclError(Exception):
    """An ACL that cannot be: ``code`` is the S3 error code, ``message`` its text."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Grantee:
    """A user (``kind`` ``"id"``, ``value`` a canonical id) or a group (``"group"``, a URI)."""

    kind: str
    value: str

    @property
    def public(self) -> bool:
        return self.kind == "group" and self.value in PUBLIC_GROUPS


@dataclass(frozen=True, slots=True)
class Grant:
    grantee: Grantee
    permission: str


@dataclass(frozen=True, slots=True)
class Acl:
    owner: str
    grants: tuple[Grant, ...]

    def stored(self, record_owner: str) -> dict[str, Any]:
        """The stored form for a bucket or object record of ``record_owner``: that owner's
        private ACL is stored as nothing (``{}``)."""
        if self == private(record_owner):
            return {}
        return {
            "v": FORMAT,
            "owner": self.owner,
            "grants": [[g.grantee.kind, g.grantee.value, g.permission] for g in self.grants],
        }

    @property
    def public(self) -> bool:
        """Whether a grant reaches beyond Stratum's own users (AllUsers, AuthenticatedUsers)."""
        return any(g.grantee.public for g in self.grants)

    def allows(self, principal: str | None, permission: str, *, ignore_public: bool) -> bool:
        """Whether ``principal`` (a canonical id; ``None``: anonymous) holds ``permission``.

        ``ignore_public``: grants to the public groups count for nothing (the bucket's
        ``IgnorePublicAcls``). The owner always holds READ_ACP and WRITE_ACP, as in S3.
        """
        if principal == self.owner and permission in (READ_ACP, WRITE_ACP):
            return True
        for grant in self.grants:
            if grant.permission != permission and grant.permission != FULL_CONTROL:
                continue
            grantee = grant.grantee
            if grantee.kind == "id":
                if grantee.value == principal:
                    return True
            elif ignore_public:
                continue
            elif grantee.value == ALL_USERS or (
                grantee.value == AUTHENTICATED_USERS and principal is not None
            ):
                return True
        return False


@lru_cache(maxsize=1024)  # every request to a bucket without an ACL of its own asks
def private(owner: str) -> Acl:
    return Acl(owner, (Grant(Grantee("id", owner), FULL_CONTROL),))


def load(stored: Mapping[str, Any] | None, owner: str) -> Acl:
    """The ACL a stored value means; ``owner`` is the bucket's or object's own owner."""
    if not stored:
        return private(owner)
    if stored.get("v") != FORMAT:
        raise ValueError(f"unsupported ACL format {stored.get('v')!r}")
    grants = tuple(Grant(Grantee(kind, value), perm) for kind, value, perm in stored["grants"])
    return Acl(str(stored.get("owner") or owner), grants)


def owner_of(stored: Mapping[str, Any] | None, default: str) -> str:
    """The owner a stored ACL names, without building the ACL (``default`` when none)."""
    if not stored:
        return default
    return str(stored.get("owner") or default)


def canned(name: str, owner: str, bucket_owner: str) -> Acl:
    """The canned ACL ``name`` for a resource of ``owner`` in a bucket of ``bucket_owner``.

    ``bucket-owner-*`` add the bucket owner only when it is not the owner already (S3);
    ``aws-exec-read`` and ``log-delivery-write`` are accepted as their owner part (there is
    no EC2 and no log delivery to grant to) plus, for the latter, the LogDelivery group.
    """
    base = [Grant(Grantee("id", owner), FULL_CONTROL)]
    if name in ("private", "aws-exec-read"):
        extra: list[Grant] = []
    elif name == "public-read":
        extra = [Grant(Grantee("group", ALL_USERS), READ)]
    elif name == "public-read-write":
        extra = [
            Grant(Grantee("group", ALL_USERS), READ),
            Grant(Grantee("group", ALL_USERS), WRITE),
        ]
    elif name == "authenticated-read":
        extra = [Grant(Grantee("group", AUTHENTICATED_USERS), READ)]
    elif name == "bucket-owner-read":
        extra = [] if bucket_owner == owner else [Grant(Grantee("id", bucket_owner), READ)]
    elif name == "bucket-owner-full-control":
        extra = [] if bucket_owner == owner else [Grant(Grantee("id", bucket_owner), FULL_CONTROL)]
    elif name == "log-delivery-write":
        extra = [
            Grant(Grantee("group", LOG_DELIVERY), WRITE),
            Grant(Grantee("group", LOG_DELIVERY), READ_ACP),
        ]
    else:
        raise AclError("InvalidArgument", f"Unknown canned ACL: {name}")
    # Others' grants first, the owner's last: the order S3 lists a canned ACL in.
    return Acl(owner, tuple(extra + base))


_GRANTEE_ITEM = re.compile(r'\s*(id|uri|emailAddress)\s*=\s*"?([^",]*)"?\s*(?:,|$)', re.IGNORECASE)


def from_grant_headers(headers: Mapping[str, str], owner: str) -> Acl | None:
    """The ACL ``x-amz-grant-*`` headers spell out (``None`` when there are none).

    Each header lists grantees as ``id="..."``, ``uri="..."`` or ``emailAddress="..."``,
    comma-separated; the owner gets nothing implicitly, as in S3.
    """
    grants: list[Grant] = []
    for header, permission in GRANT_HEADERS.items():
        value = headers.get(header)
        if value is None:
            continue
        pos = 0
        text = value.strip()
        while pos < len(text):
            item = _GRANTEE_ITEM.match(text, pos)
            if item is None or item.end() == pos:
                raise AclError("InvalidArgument", f"Invalid grant in {header}: {value}")
            pos = item.end()
            kind, who = item.group(1).lower(), item.group(2).strip()
            grants.append(Grant(_grantee(kind, who), permission))
    if not grants and not any(h in headers for h in GRANT_HEADERS):
        return None
    return Acl(owner, tuple(grants))


def _grantee(kind: str, value: str) -> Grantee:
    if kind == "id":
        return Grantee("id", value)
    if kind == "uri":
        if value not in GROUPS:
            raise AclError("InvalidArgument", f"Invalid group uri: {value}")
        return Grantee("group", value)
    raise AclError(
        "UnresolvableGrantByEmailAddress",
        "The e-mail address you provided does not match any account on record.",
    )


def validated(acl: Acl, known_ids: Iterable[str]) -> Acl:
    """``acl`` if every user it names exists and it has at most :data:`MAX_GRANTS` grants."""
    known = set(known_ids)
    if len(acl.grants) > MAX_GRANTS:
        raise AclError("MalformedACLError", f"An ACL holds at most {MAX_GRANTS} grants")
    for grant in acl.grants:
        if grant.permission not in PERMISSIONS:
            raise AclError("MalformedACLError", f"Unknown permission {grant.permission}")
        if grant.grantee.kind == "id" and grant.grantee.value not in known:
            raise AclError("InvalidArgument", "Invalid id")
    return acl
