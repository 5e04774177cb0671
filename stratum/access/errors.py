"""Why a bucket policy is refused: S3's ``MalformedPolicy``, with AWS's wording of the cause."""

from __future__ import annotations


class PolicyError(Exception):
    """A policy document that cannot be stored (``MalformedPolicy``, 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
