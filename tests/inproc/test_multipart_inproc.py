"""Multipart in process: completion is metadata-only, expiry runs on the injected clock."""

from __future__ import annotations

import hashlib
import re

import pytest

from stratum.service.multipart import NoSuchUpload
from tests.inproc.conftest import InProc

MiB = 1 << 20


def _upload_id(body: str) -> str:
    found = re.search(r"<UploadId>([^<]+)</UploadId>", body)
    assert found, body
    return found.group(1)


async def _create(t: InProc, key: str) -> str:
    resp = await t.request("POST", f"/mpb/{key}?uploads")
    assert resp.status == 200, await resp.text()
    return _upload_id(await resp.text())


async def test_complete_assembles_parts_without_copying(inproc: InProc) -> None:
    t = inproc
    assert (await t.request("PUT", "/mpb")).status == 200
    upload = await _create(t, "obj")
    parts = [bytes([i]) * (5 * MiB) for i in range(2)] + [b"tail"]
    etags = []
    for n, data in enumerate(parts, 1):
        resp = await t.request(
            "PUT", f"/mpb/obj?partNumber={n}&uploadId={upload}", data, sign_body=False
        )
        assert resp.status == 200, await resp.text()
        etags.append(resp.headers["ETag"])
    writes_before = t.node.meta.writes
    xml = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in enumerate(etags, 1)
    )
    resp = await t.request(
        "POST",
        f"/mpb/obj?uploadId={upload}",
        f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode(),
    )
    assert resp.status == 200, await resp.text()
    assert t.node.meta.writes == writes_before + 1, "completion is one metadata transaction"
    want = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    assert f"&quot;{want}&quot;" in await resp.text() or want in await resp.text()
    resp = await t.request("GET", "/mpb/obj")
    assert await resp.read() == b"".join(parts)
    resp = await t.request("GET", "/mpb/obj?partNumber=2")
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {5 * MiB}-{10 * MiB - 1}/{10 * MiB + 4}"
    assert resp.headers["x-amz-mp-parts-count"] == "3"
    assert await resp.read() == parts[1]


async def test_too_small_part_and_wrong_etag(inproc: InProc) -> None:
    t = inproc
    await t.request("PUT", "/mpb")
    upload = await _create(t, "small")
    r1 = await t.request("PUT", f"/mpb/small?partNumber=1&uploadId={upload}", b"a" * 100)
    r2 = await t.request("PUT", f"/mpb/small?partNumber=2&uploadId={upload}", b"b" * 100)
    body = (
        "<CompleteMultipartUpload>"
        f"<Part><PartNumber>1</PartNumber><ETag>{r1.headers['ETag']}</ETag></Part>"
        f"<Part><PartNumber>2</PartNumber><ETag>{r2.headers['ETag']}</ETag></Part>"
        "</CompleteMultipartUpload>"
    )
    resp = await t.request("POST", f"/mpb/small?uploadId={upload}", body.encode())
    assert resp.status == 400
    assert "<Code>EntityTooSmall</Code>" in await resp.text()
    bad = body.replace(r2.headers["ETag"].strip('"'), "0" * 32)
    resp = await t.request("POST", f"/mpb/small?uploadId={upload}", bad.encode())
    assert resp.status == 400
    assert "<Code>InvalidPart</Code>" in await resp.text()
    # Nothing became visible.
    assert (await t.request("HEAD", "/mpb/small")).status == 404


async def test_stale_uploads_expire_on_the_injected_clock(inproc: InProc) -> None:
    t = inproc
    await t.request("PUT", "/mpb")
    upload = await _create(t, "stale")
    await t.request("PUT", f"/mpb/stale?partNumber=1&uploadId={upload}", b"x" * 1000)
    assert await t.node.multipart.expire() == 0
    t.clock.advance(t.node.config.storage.multipart_expiry + 1)
    assert await t.node.multipart.expire() == 1
    with pytest.raises(NoSuchUpload):
        t.node.multipart.get("mpb", "stale", upload, t.node.root.user.canonical_id)
    # The part's volume went to the garbage queue and is freed.
    assert await t.node.service.collect_garbage() >= 1
