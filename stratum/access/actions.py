"""What each S3 operation asks of access control: its IAM action and which ACL grants it.

Every operation has a *level*:

- ``SERVICE``: no bucket (ListBuckets, CreateBucket): any signed request;
- ``BUCKET``: the bucket itself, granted by the bucket's ACL (``acl`` permission) if any;
- ``WRITE``: writing or deleting objects, granted by the bucket's ACL ``WRITE``;
- ``OBJECT``: one object (or version), granted by the object's own ACL if any;
- ``PER_KEY``: several objects named in the body (DeleteObjects), decided key by key.

An operation this table does not name is open to its bucket's owner alone: nothing can be
granted on an operation nobody has thought about.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stratum.access.acl import READ, READ_ACP, WRITE, WRITE_ACP


class Level(enum.Enum):
    SERVICE = "service"
    BUCKET = "bucket"
    WRITE = "write"
    OBJECT = "object"
    PER_KEY = "per-key"


@dataclass(frozen=True, slots=True)
class OperationAccess:
    action: str  # s3:GetObject
    level: Level
    acl: str | None = None  # the ACL permission that grants it, if an ACL can
    version_action: str | None = None  # the action when the request names a version

    def action_for(self, version_id: str | None) -> str:
        if version_id is not None and self.version_action is not None:
            return self.version_action
        return self.action


_S, _B, _W, _O = Level.SERVICE, Level.BUCKET, Level.WRITE, Level.OBJECT


def _op(
    action: str, level: Level, acl: str | None = None, version: str | None = None
) -> OperationAccess:
    return OperationAccess("s3:" + action, level, acl, None if version is None else "s3:" + version)


OPERATIONS: dict[str, OperationAccess] = {
    "ListBuckets": _op("ListAllMyBuckets", _S),
    "CreateBucket": _op("CreateBucket", _S),
    "DeleteBucket": _op("DeleteBucket", _B),
    "HeadBucket": _op("ListBucket", _B, READ),
    "ListObjects": _op("ListBucket", _B, READ),
    "ListObjectsV2": _op("ListBucket", _B, READ),
    "ListObjectVersions": _op("ListBucketVersions", _B, READ),
    "ListMultipartUploads": _op("ListBucketMultipartUploads", _B, READ),
    "GetBucketLocation": _op("GetBucketLocation", _B),
    "GetBucketVersioning": _op("GetBucketVersioning", _B),
    "PutBucketVersioning": _op("PutBucketVersioning", _B),
    "GetBucketAcl": _op("GetBucketAcl", _B, READ_ACP),
    "PutBucketAcl": _op("PutBucketAcl", _B, WRITE_ACP),
    "GetBucketPolicy": _op("GetBucketPolicy", _B),
    "PutBucketPolicy": _op("PutBucketPolicy", _B),
    "DeleteBucketPolicy": _op("DeleteBucketPolicy", _B),
    "GetBucketPolicyStatus": _op("GetBucketPolicyStatus", _B),
    "GetPublicAccessBlock": _op("GetBucketPublicAccessBlock", _B),
    "PutPublicAccessBlock": _op("PutBucketPublicAccessBlock", _B),
    "DeletePublicAccessBlock": _op("PutBucketPublicAccessBlock", _B),
    "GetBucketOwnershipControls": _op("GetBucketOwnershipControls", _B),
    "PutBucketOwnershipControls": _op("PutBucketOwnershipControls", _B),
    "DeleteBucketOwnershipControls": _op("PutBucketOwnershipControls", _B),
    "GetBucketCors": _op("GetBucketCORS", _B),
    "PutBucketCors": _op("PutBucketCORS", _B),
    "DeleteBucketCors": _op("PutBucketCORS", _B),
    "GetBucketTagging": _op("GetBucketTagging", _B),
    "PutBucketTagging": _op("PutBucketTagging", _B),
    "DeleteBucketTagging": _op("PutBucketTagging", _B),
    "GetBucketLifecycleConfiguration": _op("GetLifecycleConfiguration", _B),
    "PutBucketLifecycleConfiguration": _op("PutLifecycleConfiguration", _B),
    "DeleteBucketLifecycle": _op("PutLifecycleConfiguration", _B),
    "GetBucketEncryption": _op("GetEncryptionConfiguration", _B),
    "PutBucketEncryption": _op("PutEncryptionConfiguration", _B),
    "DeleteBucketEncryption": _op("PutEncryptionConfiguration", _B),
    "GetObjectLockConfiguration": _op("GetBucketObjectLockConfiguration", _B),
    "PutObjectLockConfiguration": _op("PutBucketObjectLockConfiguration", _B),
    "GetBucketReplication": _op("GetReplicationConfiguration", _B),
    "PutBucketReplication": _op("PutReplicationConfiguration", _B),
    "DeleteBucketReplication": _op("PutReplicationConfiguration", _B),
    "GetBucketWebsite": _op("GetBucketWebsite", _B),
    "GetBucketLogging": _op("GetBucketLogging", _B),
    "GetBucketNotificationConfiguration": _op("GetBucketNotification", _B),
    "GetBucketRequestPayment": _op("GetBucketRequestPayment", _B),
    "GetBucketAccelerateConfiguration": _op("GetAccelerateConfiguration", _B),
    "PutObject": _op("PutObject", _W, WRITE),
    "PostObject": _op("PutObject", _W, WRITE),
    "CopyObject": _op("PutObject", _W, WRITE),
    "CreateMultipartUpload": _op("PutObject", _W, WRITE),
    "UploadPart": _op("PutObject", _W, WRITE),
    "UploadPartCopy": _op("PutObject", _W, WRITE),
    "CompleteMultipartUpload": _op("PutObject", _W, WRITE),
    "AbortMultipartUpload": _op("AbortMultipartUpload", _W, WRITE),
    "ListParts": _op("ListMultipartUploadParts", _W, WRITE),
    "DeleteObject": _op("DeleteObject", _W, WRITE, "DeleteObjectVersion"),
    "DeleteObjects": OperationAccess(
        "s3:DeleteObject", Level.PER_KEY, WRITE, "s3:DeleteObjectVersion"
    ),
    "GetObject": _op("GetObject", _O, READ, "GetObjectVersion"),
    "HeadObject": _op("GetObject", _O, READ, "GetObjectVersion"),
    "SelectObjectContent": _op("GetObject", _O, READ),
    "GetObjectAcl": _op("GetObjectAcl", _O, READ_ACP, "GetObjectVersionAcl"),
    "PutObjectAcl": _op("PutObjectAcl", _O, WRITE_ACP, "PutObjectVersionAcl"),
    "GetObjectTagging": _op("GetObjectTagging", _O, None, "GetObjectVersionTagging"),
    "PutObjectTagging": _op("PutObjectTagging", _O, None, "PutObjectVersionTagging"),
    "DeleteObjectTagging": _op("DeleteObjectTagging", _O, None, "DeleteObjectVersionTagging"),
    "GetObjectAttributes": _op("GetObjectAttributes", _O, None, "GetObjectVersionAttributes"),
    "GetObjectRetention": _op("GetObjectRetention", _O),
    "PutObjectRetention": _op("PutObjectRetention", _O),
    "GetObjectLegalHold": _op("GetObjectLegalHold", _O),
    "PutObjectLegalHold": _op("PutObjectLegalHold", _O),
    "RestoreObject": _op("RestoreObject", _O),
}

# Managing the policy itself: the bucket's owner is never locked out of these by its own
# policy (AWS exempts the owning account's root user in the same way).
POLICY_ADMIN = frozenset({"s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"})


def access_of(operation: str) -> OperationAccess:
    """What ``operation`` asks; an unknown one is a bucket operation nobody may be granted."""
    found = OPERATIONS.get(operation)
    if found is not None:
        return found
    return OperationAccess("s3:" + operation, Level.BUCKET)
