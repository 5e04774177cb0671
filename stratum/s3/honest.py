"""Honest answers: a request that asks for a feature Stratum does not have is refused with
``NotImplemented`` (501, the header named), never accepted and ignored.

A client that sends ``x-amz-server-side-encryption-customer-key`` believes its data is bound
to its key; one that sends ``x-amz-server-side-encryption: aws:kms`` believes it is
encrypted under a key it controls. Stratum does neither, so storing the data and answering
200 would be a lie the client cannot see. The headers AWS defines for the writes and reads
of objects, and what Stratum does with each, are listed in docs/s3-compatibility.md
("Request headers"); those refused are :data:`REFUSED`.

``x-amz-expected-bucket-owner`` (and ``x-amz-source-expected-bucket-owner`` of a copy) is
checked rather than ignored: any value but the canonical id of the bucket's owner (of the
copy source's bucket) is AccessDenied, as AWS answers a mismatch.
"""

from __future__ import annotations

from stratum.s3.context import ReqCtx
from stratum.s3.errors import S3Error

SSE = "x-amz-server-side-encryption"
SSE_C = "x-amz-server-side-encryption-customer-"
COPY_SSE_C = "x-amz-copy-source-server-side-encryption-customer-"

# Operations that take object data or read it, and so could be asked to encrypt it.
_DATA_OPS = frozenset(
    {
        "PutObject",
        "CopyObject",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "GetObject",
        "HeadObject",
        "PostObject",
    }
)
# Headers refused on those operations: any whose name starts with one of these.
REFUSED = (
    SSE,  # SSE-S3 / SSE-KMS / DSSE-KMS and its key id, context, bucket key (and SSE-C below)
    COPY_SSE_C,  # a copy source encrypted with a customer key
    "x-amz-write-offset-bytes",  # appending to an object (S3 Express One Zone)
)
OWNER_HEADERS = ("x-amz-expected-bucket-owner", "x-amz-source-expected-bucket-owner")


def _buckets(ctx: ReqCtx) -> tuple[str | None, str | None]:
    """The bucket the request names, and its copy source's."""
    source = ctx.endpoint.copy_source
    return ctx.endpoint.bucket, None if source is None else source.bucket


def check(ctx: ReqCtx) -> None:
    """Refuse what the request asks for and Stratum does not do (before its handler runs)."""
    headers = ctx.request.headers
    for name, bucket in zip(OWNER_HEADERS, _buckets(ctx), strict=True):
        value = headers.get(name)
        if value is None or bucket is None:
            continue
        found = ctx.service.find_bucket(bucket)
        if found is not None and value.strip() != found.owner_id:
            raise S3Error("AccessDenied", f"{name} does not name the bucket's owner")
    if ctx.endpoint.name not in _DATA_OPS:
        return
    for name in headers:
        lower = name.lower()
        if lower.startswith(REFUSED):
            kind = "customer-provided keys (SSE-C)" if SSE_C in lower else "this feature"
            raise S3Error(
                "NotImplemented",
                f"Stratum does not implement {kind}: the header {lower} is refused rather "
                "than ignored",
                extra={"Header": lower},
            )
