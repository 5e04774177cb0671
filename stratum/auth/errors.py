"""Why a request failed authentication, in AWS's words.

The auth package sits below the S3 layer and knows nothing of HTTP, so it has its own error
type rather than :class:`stratum.s3.errors.S3Error`: an AWS error code, an optional message
(``None``: AWS's default text for the code) and the detail elements AWS adds to the error
document (``StringToSign``, ``HeadersNotSigned``...). The S3 layer turns one into an
``S3Error`` in one place (:func:`stratum.s3.errors.as_s3_error`), which supplies the HTTP
status and default message; nothing is lost on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AuthErrorCode = Literal[
    "AccessDenied",
    "AuthorizationHeaderMalformed",
    "AuthorizationQueryParametersError",
    "InvalidAccessKeyId",
    "InvalidArgument",
    "InvalidPolicyDocument",
    "InvalidRequest",
    "RequestTimeTooSkewed",
    "SignatureDoesNotMatch",
]


@dataclass
class AuthError(Exception):
    """A refused request, ``code`` one of :data:`AuthErrorCode`'s."""

    code: AuthErrorCode
    message: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.code)

    def __str__(self) -> str:
        return self.code if self.message is None else f"{self.code}: {self.message}"
