"""Object Lock over HTTP, judged on the injected clock: what each mode refuses, to whom, until
when; the digest AWS requires of locked writes; lock headers where there is no lock."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import Any

from aiohttp import ClientResponse
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from yarl import URL

from stratum.meta import catalog
from stratum.s3 import httpsem
from tests.inproc.conftest import ACCESS, SECRET, InProc

LOCKED = {"x-amz-bucket-object-lock-enabled": "true"}
BYPASS = {"x-amz-bypass-governance-retention": "true"}


def _md5(body: bytes) -> dict[str, str]:
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}


def _lock(mode: str, until: float) -> dict[str, str]:
    return {
        "x-amz-object-lock-mode": mode,
        "x-amz-object-lock-retain-until-date": httpsem.iso8601(until),
    }


async def _code(response: object) -> str:
    text = await response.text()  # type: ignore[attr-defined]
    found = re.search(r"<Code>([^<]*)</Code>", text)
    return found.group(1) if found else ""


def _retention(mode: str, until: float) -> bytes:
    return (
        f"<Retention><Mode>{mode}</Mode>"
        f"<RetainUntilDate>{httpsem.iso8601(until)}</RetainUntilDate></Retention>"
    ).encode()


async def _presigned_put(t: InProc, path: str, body: bytes) -> ClientResponse:
    """A PUT through a presigned URL: an unsigned payload, and no digest of the body."""
    url = f"http://{t.client.host}:{t.client.port}{path}"
    request = AWSRequest(method="PUT", url=url)
    S3SigV4QueryAuth(Credentials(ACCESS, SECRET), "s3", "us-east-1", 300).add_auth(request)
    return await t.client.session.put(URL(request.url, encoded=True), data=body)


async def _put(t: InProc, path: str, body: bytes, headers: dict[str, str]) -> str:
    response = await t.request("PUT", path, body, {**_md5(body), **headers})
    assert response.status == 200, await response.text()
    return response.headers["x-amz-version-id"]


async def test_compliance_holds_against_everyone_until_its_date(inproc: InProc) -> None:
    t = inproc
    assert (await t.request("PUT", "/vault", headers=LOCKED)).status == 200
    until = t.clock.now() + 60
    vid = await _put(t, "/vault/k", b"backup", _lock("COMPLIANCE", until))
    head = await t.request("HEAD", "/vault/k")
    assert head.headers["x-amz-object-lock-mode"] == "COMPLIANCE"
    assert head.headers["x-amz-object-lock-retain-until-date"] == httpsem.iso8601(until)

    refused = await t.request("DELETE", f"/vault/k?versionId={vid}", headers=BYPASS)
    assert (refused.status, await _code(refused)) == (403, "AccessDenied")
    # shortening it, or making it GOVERNANCE, is refused, even with the bypass
    for mode, when in (("COMPLIANCE", until - 30), ("GOVERNANCE", until + 30)):
        body = _retention(mode, when)
        changed = await t.request(
            "PUT", f"/vault/k?retention&versionId={vid}", body, {**_md5(body), **BYPASS}
        )
        assert (changed.status, await _code(changed)) == (403, "AccessDenied")
    # extending it is fine
    body = _retention("COMPLIANCE", until + 60)
    assert (await t.request("PUT", "/vault/k?retention", body, _md5(body))).status == 200
    # a DeleteObjects naming the version reports it refused, the other key deleted
    other = await _put(t, "/vault/free", b"x", {})
    doc = (
        f"<Delete><Object><Key>k</Key><VersionId>{vid}</VersionId></Object>"
        f"<Object><Key>free</Key><VersionId>{other}</VersionId></Object></Delete>"
    ).encode()
    multi = await t.request("POST", "/vault?delete", doc, _md5(doc))
    text = await multi.text()
    assert "<Code>AccessDenied</Code>" in text and f"<VersionId>{other}</VersionId>" in text
    # a bucket holding it cannot go
    gone = await t.request("DELETE", "/vault")
    assert (gone.status, await _code(gone)) == (409, "BucketNotEmpty")

    t.clock.advance(121)  # past the extended date
    assert (await t.request("DELETE", f"/vault/k?versionId={vid}")).status == 204


async def test_governance_yields_to_the_bypass_and_legal_holds_to_nothing(inproc: InProc) -> None:
    t = inproc
    assert (await t.request("PUT", "/gov", headers=LOCKED)).status == 200
    vid = await _put(t, "/gov/k", b"data", _lock("GOVERNANCE", t.clock.now() + 3600))
    refused = await t.request("DELETE", f"/gov/k?versionId={vid}")
    assert (refused.status, await _code(refused)) == (403, "AccessDenied")
    hold = b"<LegalHold><Status>ON</Status></LegalHold>"
    assert (await t.request("PUT", "/gov/k?legal-hold", hold, _md5(hold))).status == 200
    held = await t.request("DELETE", f"/gov/k?versionId={vid}", headers=BYPASS)
    assert (held.status, await _code(held)) == (403, "AccessDenied")
    got = await t.request("GET", f"/gov/k?legal-hold&versionId={vid}")
    assert "<Status>ON</Status>" in await got.text()
    off = b"<LegalHold><Status>OFF</Status></LegalHold>"
    assert (await t.request("PUT", "/gov/k?legal-hold", off, _md5(off))).status == 200
    assert (await t.request("DELETE", f"/gov/k?versionId={vid}", headers=BYPASS)).status == 204


async def test_default_retention_applies_and_locked_writes_need_a_digest(inproc: InProc) -> None:
    t = inproc
    assert (await t.request("PUT", "/dflt", headers=LOCKED)).status == 200
    config = (
        b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule>"
        b"<DefaultRetention><Mode>COMPLIANCE</Mode><Days>2</Days></DefaultRetention>"
        b"</Rule></ObjectLockConfiguration>"
    )
    assert (await t.request("PUT", "/dflt?object-lock", config, _md5(config))).status == 200
    got = await t.request("GET", "/dflt?object-lock")
    assert "<Mode>COMPLIANCE</Mode><Days>2</Days>" in await got.text()

    bare = await _presigned_put(t, "/dflt/k", b"no digest")
    assert (bare.status, await _code(bare)) == (400, "InvalidRequest")
    vid = await _put(t, "/dflt/k", b"with digest", {})
    retention = await t.request("GET", f"/dflt/k?retention&versionId={vid}")
    text = await retention.text()
    assert "<Mode>COMPLIANCE</Mode>" in text
    assert httpsem.iso8601(t.clock.now() + 2 * 86400)[:13] in text  # two days on

    suspend = b"<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>"
    refused = await t.request("PUT", "/dflt?versioning", suspend)
    assert (refused.status, await _code(refused)) == (409, "InvalidBucketState")


async def test_lock_settings_need_a_bucket_with_object_lock(inproc: InProc) -> None:
    t = inproc
    assert (await t.request("PUT", "/plain")).status == 200
    body = b"data"
    put = await t.request(
        "PUT", "/plain/k", body, {**_md5(body), **_lock("GOVERNANCE", t.clock.now() + 60)}
    )
    assert (put.status, await _code(put)) == (400, "InvalidRequest")
    assert (await t.request("PUT", "/plain/k", body, _md5(body))).status == 200
    for query in ("retention", "legal-hold"):
        got = await t.request("GET", f"/plain/k?{query}")
        assert (got.status, await _code(got)) == (400, "InvalidRequest")
    config = await t.request("GET", "/plain?object-lock")
    assert (config.status, await _code(config)) == (404, "ObjectLockConfigurationNotFoundError")
    doc = (
        b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>"
        b"</ObjectLockConfiguration>"
    )
    refused = await t.request("PUT", "/plain?object-lock", doc, _md5(doc))
    assert (refused.status, await _code(refused)) == (409, "InvalidBucketState")


async def test_the_collector_never_frees_data_a_live_version_uses(inproc: InProc) -> None:
    t = inproc
    assert (await t.request("PUT", "/held", headers=LOCKED)).status == 200
    body = os.urandom(300_000)  # erasure-coded: freeing it would delete shard files
    await _put(t, "/held/k", body, _lock("COMPLIANCE", t.clock.now() + 3600))
    view = t.node.service.head_object("held", "k", t.node.root.user.canonical_id)

    def queue_by_mistake(tx: Any) -> None:
        catalog.retire_location(tx, "mistaken", view.volume)

    def dropped_from_objects(tx: Any) -> None:  # as a removal that knows no versions would
        catalog.delete_object(tx, "held", "k")
        catalog.retire_volume(tx, view.volume.volume_id)

    for mistake in (queue_by_mistake, dropped_from_objects):
        await t.node.meta.write(mistake)
        await t.node.service.collect_garbage()
        assert t.node.meta.read(catalog.pending_garbage) == []  # the entry is forgotten
        got = await t.request("GET", f"/held/k?versionId={view.record.version_id}")
        assert got.status == 200 and await got.read() == body
