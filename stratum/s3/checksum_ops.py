"""Checksums of multipart objects at completion, and the checksum headers of reads.

CompleteMultipartUpload computes the object's checksum from its parts' stored values, as
the upload's ``x-amz-checksum-type`` says (:func:`stratum.s3.checksums.composite_checksum`
or :func:`~stratum.s3.checksums.full_object_checksum`), and checks it the way AWS does: a
part listed with a checksum other than the one stored for it is ``InvalidPart``; a value in
the request's ``x-amz-checksum-<algorithm>`` header other than the computed one is
``BadDigest``; an ``x-amz-checksum-type`` other than the upload's is ``InvalidRequest``.

Reads show stored checksums only when asked (``x-amz-checksum-mode: ENABLED``), with their
``x-amz-checksum-type``; a read of one part of a multipart object shows that part's value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

from stratum.meta.records import ObjectRecord, PartRecord, UploadRecord, VolumeRecord
from stratum.s3 import checksums
from stratum.s3.context import ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.xml_requests import CompletedPart

MODE_HEADER = "x-amz-checksum-mode"

ChecksumOf = Callable[[UploadRecord, list[PartRecord]], dict[str, str]]


def completion_checksums(ctx: ReqCtx, requested: Sequence[CompletedPart]) -> ChecksumOf:
    """What CompleteMultipartUpload stores as the object's checksum, checked against the
    request (called with the upload and its chosen parts, before anything is committed)."""
    expected = checksums.requested_checksums(ctx.request.headers, composite=True)
    wanted_type = (ctx.header(checksums.TYPE_HEADER) or "").strip().upper()
    listed = {p.part_number: p.checksums for p in requested}

    def compute(upload: UploadRecord, parts: list[PartRecord]) -> dict[str, str]:
        alg = upload.checksum_algorithm
        if wanted_type and wanted_type != (upload.checksum_type or ""):
            raise S3Error(
                "InvalidRequest",
                f"The upload was created using the {upload.checksum_type or 'null'} checksum "
                f"mode. The complete request must use the same checksum mode.",
            )
        for part in parts:
            for name, value in listed.get(part.part_number, {}).items():
                given = checksums.algorithm_of_element(name)
                if given is not None and part.checksums.get(given, value) != value:
                    raise S3Error("InvalidPart", extra={"PartNumber": str(part.part_number)})
        if not alg:
            if expected:
                [given] = expected
                raise S3Error(
                    "InvalidRequest",
                    f"The upload was created without a checksum, so the complete request "
                    f"may not carry {checksums.header_of_algorithm(given)}.",
                )
            return {}
        value = _object_checksum(upload, parts)
        for given, sent in expected.items():
            if given != alg:
                raise S3Error(
                    "InvalidRequest",
                    f"The upload was created using a {alg} checksum; the complete request "
                    f"carries {checksums.header_of_algorithm(given)}.",
                )
            if sent.partition("-")[0] != value.partition("-")[0]:
                raise checksums.mismatch_error(given)
        return {alg: value}

    return compute


def _object_checksum(upload: UploadRecord, parts: list[PartRecord]) -> str:
    alg = upload.checksum_algorithm
    algorithm = cast(checksums.Algorithm, alg)
    missing = next((p.part_number for p in parts if alg not in p.checksums), None)
    if missing is not None:
        raise S3Error(
            "InvalidRequest",
            f"The upload was created using a {alg} checksum. The complete request must include "
            f"the checksum for each part. It was missing for part {missing} in the request.",
        )
    values = [p.checksums[alg] for p in parts]
    if upload.checksum_type == checksums.FULL_OBJECT:
        return checksums.full_object_checksum(
            algorithm, [(v, p.size) for v, p in zip(values, parts, strict=True)]
        )
    return checksums.composite_checksum(algorithm, values)


def read_headers(
    ctx: ReqCtx, record: ObjectRecord, volume: VolumeRecord, part: int | None
) -> dict[str, str]:
    """The checksum headers of a GET or HEAD (of part ``part``, if one is asked for)."""
    if not record.checksums or (ctx.header(MODE_HEADER) or "").upper() != "ENABLED":
        return {}
    out = checksums.response_headers(record.checksums)
    if part is not None and record.parts:
        kind = out[checksums.TYPE_HEADER]
        out = {}
        if len(volume.part_checksums) >= part:
            [alg] = record.checksums
            out = checksums.response_headers({alg: volume.part_checksums[part - 1]})
            out[checksums.TYPE_HEADER] = kind
    return out
