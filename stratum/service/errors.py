"""Errors of the object service.

Each names a condition in the object model, not an HTTP status: the S3 layer maps
them to S3 error codes at its boundary (``stratum.s3.server``), and other callers
(the CLI, the tier engine) handle them on their own terms.
"""

from __future__ import annotations


class ObjectServiceError(Exception):
    """Base of the object service's deliberate errors."""

    def __init__(self, message: str = "", **details: str) -> None:
        super().__init__(message or type(self).__name__)
        self.details = details


class NoSuchBucket(ObjectServiceError):
    pass


class NoSuchKey(ObjectServiceError):
    pass


class BucketNotEmpty(ObjectServiceError):
    pass


class BucketAlreadyExists(ObjectServiceError):
    """Another owner has a bucket of that name."""


class BucketAlreadyOwnedByYou(ObjectServiceError):
    pass


class AccessDenied(ObjectServiceError):
    """The bucket exists but belongs to someone else."""


class PreconditionFailed(ObjectServiceError):
    pass


class BadDigest(ObjectServiceError):
    """The body did not match a digest the client declared."""


class IncompleteBody(ObjectServiceError):
    pass


class EntityTooLarge(ObjectServiceError):
    pass


class InsufficientStorage(ObjectServiceError):
    pass


class TierUnavailable(ObjectServiceError):
    """Too few disks of the tier are online to write with the promised redundancy."""
