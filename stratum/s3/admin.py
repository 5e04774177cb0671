"""The admin API: JSON under ``/_stratum/`` on the S3 port, for the root user only.

``_stratum`` can never be a bucket name (underscores are not allowed), so these paths
cannot collide with S3 requests. Requests are SigV4-signed like any S3 request (the
``stratum`` command signs them with the root keys it reads from the data directory).

- ``GET  /_stratum/status``                 scrub, heal and disk status
- ``POST /_stratum/scrub[?bucket=B[&key=K]]`` run a scrub pass now, at full speed; answers
  with the pass's figures when it is complete
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from stratum.model.maintenance import Maintenance
from stratum.model.users import UserDirectory
from stratum.s3 import sigv4
from stratum.s3.errors import S3Error
from stratum.util.clock import Clock

PREFIX = "/_stratum/"


class AdminApi:
    def __init__(
        self, maintenance: Maintenance, users: UserDirectory, region: str, clock: Clock
    ) -> None:
        self.maintenance = maintenance
        self.users = users
        self.region = region
        self.clock = clock

    def _authorize(self, request: web.Request, query: list[tuple[str, str]]) -> None:
        raw_path = request.raw_path.partition("?")[0]
        view = sigv4.RequestView.from_wire(request.method, raw_path, query, request.headers.items())

        def secret(access_key: str) -> str | None:
            user = self.users.lookup(access_key)
            return None if user is None else user.secret_key

        auth = sigv4.verify(view, secret, region=self.region, now=self.clock.now())
        if auth.access_key != self.users.root.access_key:
            raise S3Error("AccessDenied", "The admin API is for the root user only")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = parse_qsl(request.raw_path.partition("?")[2], keep_blank_values=True)
        self._authorize(request, query)
        params = dict(query)
        route = (request.method, request.path[len(PREFIX) :])
        if route == ("GET", "status"):
            return _json(self.maintenance.status())
        if route == ("POST", "scrub"):
            figures = await self.maintenance.scrub(
                bucket=params.get("bucket") or None, key=params.get("key") or None
            )
            return _json(vars(figures))
        raise S3Error("InvalidRequest", f"no admin operation {request.method} {request.path}")


def _json(value: Any) -> web.Response:
    return web.Response(text=json.dumps(value, indent=2), content_type="application/json")
