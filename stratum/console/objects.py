"""Buckets and objects, for every user: browse, upload, download, delete, share, explain.

Each action is an S3 request signed with the visitor's keys (:mod:`stratum.console.client`),
so the server grants or refuses it exactly as it would for any client of that user. Object
keys travel in the query string (``?key=``), so any key, slashes and all, has one URL.

Uploads come from the page's script (``static/console.js``): a file up to
:data:`PART_SIZE` in one PUT, a larger one as a multipart upload in parts of that size, one
after the other; each request body is streamed through to the server, never held whole.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from typing import Any
from urllib.parse import quote

from aiohttp import web

from stratum.console.app import Console, visitor
from stratum.console.client import S3Failure
from stratum.console.signing import MAX_PRESIGNED_EXPIRES, object_path, presigned_url

PART_SIZE = 16 << 20  # the script's part size; S3's minimum is 5 MiB
DOWNLOAD_CHUNK = 256 << 10
SHARE_EXPIRIES = (("1 hour", 3600), ("1 day", 86400), ("7 days", MAX_PRESIGNED_EXPIRES))
# S3's answers when a feature is missing (versions, object lock) rather than refused.
NOT_AVAILABLE = frozenset(
    {"NotImplemented", "ObjectLockConfigurationNotFoundError", "InvalidRequest", "Unsupported"}
)


class ObjectPages:
    def __init__(self, console: Console, s3_scheme: str, s3_host: str, s3_port: int) -> None:
        self.console = console
        self.client = console.client
        # Where a browser or curl reaches the S3 port, for share links: the listen host, or
        # (listening on every interface) the host name the visitor reached the console by.
        self.s3_scheme = s3_scheme
        self.s3_host = s3_host
        self.s3_port = s3_port

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/buckets", self.buckets)
        r.add_post("/buckets", self.create_bucket)
        r.add_get("/b/{bucket}", self.listing)
        r.add_post("/b/{bucket}/remove", self.delete_bucket)
        r.add_get("/b/{bucket}/object", self.object_page)
        r.add_get("/b/{bucket}/download", self.download)
        r.add_post("/b/{bucket}/delete", self.delete_object)
        r.add_post("/b/{bucket}/share", self.share)
        r.add_route("*", "/b/{bucket}/upload", self.upload)

    # -- buckets ----------------------------------------------------------------------

    async def buckets(self, request: web.Request) -> web.Response:
        who = visitor(request)
        names = await self.client.list_buckets(who.creds)
        totals = self.console.bucket_totals()
        rows = [(name, created, totals.get(name)) for name, created in names]
        return self.console.render(request, "buckets.html", buckets=rows)

    async def create_bucket(self, request: web.Request) -> web.StreamResponse:
        name = str((await request.post()).get("name", "")).strip()
        await self.client.call(visitor(request).creds, "PUT", name)
        raise web.HTTPSeeOther(f"/b/{quote(name)}")

    async def delete_bucket(self, request: web.Request) -> web.StreamResponse:
        await self.client.call(visitor(request).creds, "DELETE", request.match_info["bucket"])
        raise web.HTTPSeeOther("/buckets")

    # -- listing ----------------------------------------------------------------------

    async def listing(self, request: web.Request) -> web.Response:
        who = visitor(request)
        bucket = request.match_info["bucket"]
        prefix = request.query.get("prefix", "")
        token = request.query.get("token", "")
        page = await self.client.list_objects(who.creds, bucket, prefix, token)
        crumbs = [("", bucket)]
        parts = prefix.split("/")[:-1]
        for i, part in enumerate(parts):
            crumbs.append(("/".join(parts[: i + 1]) + "/", part))
        return self.console.render(
            request,
            "listing.html",
            bucket=bucket,
            prefix=prefix,
            crumbs=crumbs,
            entries=page.entries,
            next_token=page.next_token,
            part_size=PART_SIZE,
        )

    # -- one object -------------------------------------------------------------------

    async def object_page(self, request: web.Request) -> web.Response:
        bucket = request.match_info["bucket"]
        return await self._object(request, bucket, request.query.get("key", ""))

    async def _object(
        self, request: web.Request, bucket: str, key: str, share: str = ""
    ) -> web.Response:
        creds = visitor(request).creds
        head = await self.client.head_object(creds, bucket, key)
        # The HEAD above was the visitor's own: they may see this object, so its explanation
        # (an admin API answer, root-signed) is theirs to see too.
        versions, versioning, lock, explain = await asyncio.gather(
            self._optional(self.client.list_versions(creds, bucket, key)),
            self._optional(self.client.bucket_setting(creds, bucket, "versioning")),
            self._optional(self.client.bucket_setting(creds, bucket, "object-lock")),
            self.client.admin(
                self.console.root_creds, "GET", "explain", [("bucket", bucket), ("key", key)]
            ),
        )
        return self.console.render(
            request,
            "object.html",
            bucket=bucket,
            key=key,
            parent=key.rpartition("/")[0] + "/" if "/" in key else "",
            head=head,
            versions=versions,
            versioning=versioning,
            lock=lock,
            explain=None if "error" in explain else explain,
            explain_json=json.dumps(explain, indent=2),
            expiries=SHARE_EXPIRIES,
            share=share,
        )

    @staticmethod
    async def _optional(call: Any) -> Any:
        """A feature's answer, or None where the server does not offer it."""
        try:
            return await call
        except S3Failure as exc:
            if exc.code in NOT_AVAILABLE or exc.status in (404, 405, 501):
                return None
            raise

    async def download(self, request: web.Request) -> web.StreamResponse:
        who = visitor(request)
        bucket = request.match_info["bucket"]
        key = request.query.get("key", "")
        query = [("versionId", request.query["version"])] if "version" in request.query else []
        async with self.client.request(who.creds, "GET", bucket, key, query) as upstream:
            response = web.StreamResponse(headers=_download_headers(upstream.headers, key))
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(DOWNLOAD_CHUNK):
                await response.write(chunk)
            await response.write_eof()
            return response

    async def delete_object(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        bucket = request.match_info["bucket"]
        key = str(form.get("key", ""))
        await self.client.call(visitor(request).creds, "DELETE", bucket, key)
        prefix = key.rpartition("/")[0] + "/" if "/" in key else ""
        raise web.HTTPSeeOther(f"/b/{quote(bucket)}?prefix={quote(prefix)}")

    async def share(self, request: web.Request) -> web.Response:
        who = visitor(request)
        form = await request.post()
        bucket = request.match_info["bucket"]
        key = str(form.get("key", ""))
        try:
            expires = int(str(form.get("expires", "3600")))
        except ValueError:
            raise web.HTTPBadRequest(text="expires must be a number of seconds") from None
        await self.client.head_object(who.creds, bucket, key)  # a link to something that exists
        host = self._share_host(request)
        scheme_default = 443 if self.s3_scheme == "https" else 80
        authority = host if self.s3_port == scheme_default else f"{host}:{self.s3_port}"
        try:
            link = presigned_url(
                who.creds,
                "GET",
                f"{self.s3_scheme}://{authority}",
                authority,
                object_path(bucket, key),
                region=self.client.region,
                now=self.console.clock.now(),
                expires=expires,
            )
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return await self._object(request, bucket, key, share=link)

    def _share_host(self, request: web.Request) -> str:
        if self.s3_host not in ("", "0.0.0.0", "::"):
            return f"[{self.s3_host}]" if ":" in self.s3_host else self.s3_host
        host = request.url.host or "127.0.0.1"
        try:
            if ipaddress.ip_address(host).version == 6:
                return f"[{host}]"
        except ValueError:
            pass
        return host

    # -- uploads (the page's script) --------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        """``PUT ?key=K``: one object; ``POST ?key=K&uploads``: start a multipart upload;
        ``PUT ?key=K&upload_id=U&part=N``: one part; ``POST ?key=K&upload_id=U`` with
        ``{"etags": [...]}``: complete it; ``DELETE ?key=K&upload_id=U``: abort it."""
        who = visitor(request)
        bucket = request.match_info["bucket"]
        q = request.query
        key = q.get("key", "")
        if not key:
            raise web.HTTPBadRequest(text="no key")
        upload_id = q.get("upload_id", "")
        method = request.method
        content_type = q.get("type") or "application/octet-stream"
        if method == "POST" and "uploads" in q:
            upload_id = await self.client.create_upload(who.creds, bucket, key, content_type)
            return web.json_response({"upload_id": upload_id})
        if method == "POST" and upload_id:
            etags = (await request.json()).get("etags", [])
            await self.client.complete_upload(who.creds, bucket, key, upload_id, etags)
            return web.json_response({"ok": True})
        if method == "DELETE" and upload_id:
            await self.client.call(who.creds, "DELETE", bucket, key, [("uploadId", upload_id)])
            return web.json_response({"ok": True})
        if method != "PUT":
            raise web.HTTPMethodNotAllowed(method, ["PUT", "POST", "DELETE"])
        if request.content_length is None:
            raise web.HTTPLengthRequired()
        headers = {"content-length": str(request.content_length)}
        query: list[tuple[str, str]] = []
        if upload_id:
            query = [("partNumber", q.get("part", "1")), ("uploadId", upload_id)]
        else:
            headers["content-type"] = content_type
        async with self.client.request(
            who.creds, "PUT", bucket, key, query, headers=headers, data=request.content
        ) as response:
            return web.json_response({"etag": response.headers.get("ETag", "")})


def _download_headers(upstream: Any, key: str) -> dict[str, str]:
    name = key.rpartition("/")[2] or "download"
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    headers = {
        "Content-Type": upstream.get("Content-Type", "application/octet-stream"),
        "Content-Disposition": (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
        ),
    }
    for name in ("Content-Length", "ETag", "Last-Modified"):
        if name in upstream:
            headers[name] = upstream[name]
    return headers
