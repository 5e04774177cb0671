"""Access control at the S3 boundary: every request, signed or anonymous, is decided here.

After authentication the server calls :func:`authorize` with the routed endpoint. It reads
the bucket's record (its owner, ACL, policy, public access block and ownership controls are
all in it) and asks :func:`stratum.access.decide.decide`:

- denied: ``AccessDenied`` before the handler runs (and before any body is read);
- allowed: the handler runs *on the bucket owner's authority* (:attr:`RequestAccess.acting_id`
  is what handlers pass the object service as the owner id), the requester's own id being
  kept for what it owns (:attr:`RequestAccess.principal`);
- depends on the object (its ACL, or a policy condition on its tags): the decision is
  finished once the object is read. GET, HEAD and the object ACL operations finish it in
  their own read of the object (:meth:`RequestAccess.check_object`, called by
  :func:`stratum.s3.lookup.view_object`); for any other operation the object is read here
  first, so that no handler can forget.

A request for a missing object that the requester may not read is ``AccessDenied`` unless
it may list the bucket (``s3:ListBucket`` with the key as ``s3:prefix``), as S3 answers, so
that names cannot be probed. A request naming a bucket that does not exist goes on to its
handler, which answers ``NoSuchBucket``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from aiohttp import web

from stratum.access import acl as acls
from stratum.access.actions import OPERATIONS, Level, OperationAccess, access_of
from stratum.access.decide import (
    BucketAccess,
    Decision,
    ObjectFacts,
    RequestFacts,
    bucket_access,
    decide,
)
from stratum.access.errors import PolicyError
from stratum.auth import AuthResult
from stratum.auth.request import STREAMING_UNSIGNED_PAYLOAD_TRAILER, UNSIGNED_PAYLOAD
from stratum.meta.records import BucketRecord, ObjectRecord
from stratum.s3.errors import S3Error
from stratum.service import errors as service_errors
from stratum.service.objects import ObjectService
from stratum.service.users import User
from stratum.service.versioning import DeleteMarkerFound, NoSuchVersion

# A request without credentials: no access key, no canonical id.
ANONYMOUS = User(access_key="", secret_key="", canonical_id="", display_name="")


def anonymous_auth(headers: Mapping[str, str]) -> AuthResult:
    """What an unsigned request's body promises: nothing, unless it declares unsigned
    aws-chunked framing (which is then decoded) or a SHA-256 (which is then checked)."""
    declared = headers.get("x-amz-content-sha256", "")
    if declared == STREAMING_UNSIGNED_PAYLOAD_TRAILER or (
        len(declared) == 64 and all(c in "0123456789abcdef" for c in declared)
    ):
        return AuthResult("", declared)
    return AuthResult("", UNSIGNED_PAYLOAD)


# Operations whose handlers finish an object-dependent decision in their own read.
HANDLER_CHECKED = frozenset({"GetObject", "HeadObject", "GetObjectAcl", "PutObjectAcl"})

FORM_UPLOAD = "PostObject"
_LIST = OPERATIONS["ListObjects"]
_READ_SOURCE = OPERATIONS["GetObject"]


def request_facts(
    request: web.Request,
    signed: AuthResult | None,
    user: User,
    params: Mapping[str, str],
    now: float,
) -> RequestFacts:
    """What policy conditions may ask of this request (``aws:SourceIp`` is the peer's
    address: a header naming another is the client's say-so, not a fact)."""
    if signed is None:
        principal, version, kind = None, "", ""
    else:
        principal = user.canonical_id
        sigv2 = request.headers.get("Authorization", "").startswith("AWS ") or (
            "AWSAccessKeyId" in params
        )
        version = "AWS" if sigv2 else "AWS4-HMAC-SHA256"
        kind = "REST-QUERY-STRING" if signed.presigned or "Signature" in params else "REST-HEADER"
    return RequestFacts(
        principal=principal,
        source_ip=request.remote or "",
        secure=request.secure,
        now=now,
        headers=request.headers,
        params=params,
        signature_version=version,
        auth_type=kind,
    )


def object_facts(record: ObjectRecord) -> ObjectFacts:
    """What a decision needs of an object: owner (its ACL's, else the record's), ACL, tags."""
    return ObjectFacts(acls.owner_of(record.acl, record.owner_id), record.acl, record.tags)


def load_bucket_access(record: BucketRecord) -> BucketAccess:
    try:
        return bucket_access(record.name, record.owner_id, record.settings)
    except (PolicyError, ValueError, KeyError, TypeError, zlib.error):
        # A stored policy or ACL this code cannot read (checked when stored: a newer or a
        # damaged one): refuse everything rather than guess; the owner may still replace
        # or delete the policy.
        return bucket_access(record.name, record.owner_id, {"policy": _DENY_OTHERS})


_DENY_OTHERS = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*",'
    '"Action":"*","Resource":"*"}]}'
)


@dataclass
class RequestAccess:
    """One request's access decision and what handlers need of it."""

    op: OperationAccess
    facts: RequestFacts
    bucket: BucketAccess | None  # None: no bucket named, or none of that name
    acting_id: str
    pending: bool = False  # the decision waits for the object
    display_names: Callable[[], Mapping[str, str]] = field(default=lambda: {}, repr=False)

    @property
    def principal(self) -> str | None:
        return self.facts.principal

    def check_object(self, key: str, version_id: str | None, record: ObjectRecord | None) -> None:
        """Finish a decision that waits for the object (``None``: there is none); raise
        ``AccessDenied`` when refused. Does nothing once decided."""
        if not self.pending or self.bucket is None:
            return
        obj = None if record is None else object_facts(record)
        self.facts.with_object(obj)
        decision = decide(self.op, self.bucket, key, version_id, self.facts, obj)
        if decision is Decision.ALLOW:
            self.pending = False
            return
        if record is None and self.may_list(key):
            self.pending = False  # the handler answers that there is no such object
            return
        raise S3Error("AccessDenied")

    def may_list(self, key: str) -> bool:
        """Whether the requester may list the bucket at ``key`` (S3's 404-or-403 rule)."""
        assert self.bucket is not None
        facts = replace(self.facts, list_prefix=key)
        return decide(_LIST, self.bucket, None, None, facts) is Decision.ALLOW

    def grant_form(self, principal: str | None, key: str) -> None:
        """A browser form upload (PostObject): decide once the form says who signed it
        (``None``: an unsigned form) and which key it writes; ``AccessDenied`` if refused."""
        if self.bucket is None:
            self.acting_id = principal or ""
            return
        self.facts = replace(self.facts, principal=principal)
        if decide(self.op, self.bucket, key, None, self.facts) is not Decision.ALLOW:
            raise S3Error("AccessDenied")
        self.acting_id = self.bucket.owner
        self.pending = False

    def allows_key(self, key: str, version_id: str | None) -> bool:
        """For operations decided key by key (DeleteObjects): may this key be touched?"""
        if self.bucket is None:
            return True  # no such bucket: the service says so
        facts = replace(self.facts)
        return decide(self.op, self.bucket, key, version_id, facts) is Decision.ALLOW


def authorize(
    service: ObjectService,
    operation: str,
    bucket_name: str | None,
    key: str | None,
    version_id: str | None,
    facts: RequestFacts,
    display_names: Callable[[], Mapping[str, str]],
) -> RequestAccess:
    """Decide a routed request; raise ``AccessDenied`` when it is refused outright."""
    op = access_of(operation)
    principal = facts.principal
    own_id = principal or ""
    if op.level is Level.SERVICE or bucket_name is None:
        if principal is None:
            raise S3Error("AccessDenied")
        return RequestAccess(op, facts, None, own_id, display_names=display_names)
    record = service.find_bucket(bucket_name)
    if record is None:
        return RequestAccess(op, facts, None, own_id, display_names=display_names)
    bucket = load_bucket_access(record)
    access = RequestAccess(op, facts, bucket, bucket.owner, display_names=display_names)
    if operation == FORM_UPLOAD:
        # Who signed a browser form is known once the form's fields are read: until the
        # handler calls grant_form, the request acts for no one (the service refuses it).
        access.acting_id = ""
        access.pending = True
        return access
    if op.level is Level.PER_KEY:
        if bucket.policy is None and not access.allows_key("", None):
            raise S3Error("AccessDenied")  # no key can be allowed: refuse the request whole
        return access  # the handler asks allows_key for each key
    decision = decide(op, bucket, key, version_id, facts)
    if decision is Decision.DENY:
        raise S3Error("AccessDenied")
    if decision is Decision.NEEDS_OBJECT:
        access.pending = True
        if operation not in HANDLER_CHECKED and key is not None:
            record_found = _find_object(service, bucket.name, key, access.acting_id, version_id)
            access.check_object(key, version_id, record_found)
    return access


def _find_object(
    service: ObjectService, bucket: str, key: str, acting_id: str, version_id: str | None
) -> ObjectRecord | None:
    try:
        return service.head_object(bucket, key, acting_id, version_id).record
    except (service_errors.NoSuchKey, NoSuchVersion, DeleteMarkerFound):
        return None


def source_access(
    service: ObjectService, facts: RequestFacts, bucket_name: str, key: str, version_id: str | None
) -> str:
    """The owner id to read a copy source with, once the requester may read it (else
    ``AccessDenied``; a source bucket that does not exist is the service's to report)."""
    record = service.find_bucket(bucket_name)
    if record is None:
        return facts.principal or ""
    bucket = load_bucket_access(record)
    source_facts = replace(facts)
    access = RequestAccess(_READ_SOURCE, source_facts, bucket, bucket.owner)
    decision = decide(_READ_SOURCE, bucket, key, version_id, source_facts)
    if decision is Decision.DENY:
        raise S3Error("AccessDenied")
    if decision is Decision.NEEDS_OBJECT:
        access.pending = True
        found = _find_object(service, bucket_name, key, bucket.owner, version_id)
        access.check_object(key, version_id, found)
    return bucket.owner
