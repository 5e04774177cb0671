"""The admin API: JSON under ``/_stratum/`` on the S3 port, for the root user only.

``_stratum`` can never be a bucket name (underscores are not allowed), so these paths
cannot collide with S3 requests. Requests are SigV4-signed like any S3 request (the
``stratum`` command signs them with the root keys it reads from the data directory), and
refusals are S3 error documents: :mod:`stratum.web.app` runs this API in the S3 server's
envelope (request id, error rendering, access log line, request metrics).

- ``GET  /_stratum/status``                 scrub, heal and disk status
- ``POST /_stratum/scrub[?bucket=B[&key=K]]`` run a scrub pass now, at full speed; answers
  with the pass's figures when it is complete
- ``GET  /_stratum/explain?bucket=B&key=K[&version=V]``   why an object (or one version of it)
  is in its tier, and what's next
- ``GET  /_stratum/tier/log[?bucket=B[&key=K]][&limit=N]`` the decision log, newest first
- ``POST /_stratum/tier/run``                 a tiering pass now; answers with its moves
- ``GET  /_stratum/tier/classes[?limit=N]``    the learned policy's classes and statistics
- ``PUT  /_stratum/tier/pin?bucket=B&tier=T``  pin a bucket to hot/warm/cold ("" = automatic)
- ``GET  /_stratum/users``                    the users (access key, name, canonical id; no
  secrets)
- ``POST /_stratum/users?access_key=A&name=N`` add a user (a key made up when A is empty); the
  answer holds the new secret key, shown once
- ``POST /_stratum/users/rotate?access_key=A`` a new secret key for a user, shown once
- ``DELETE /_stratum/users?access_key=A[&to=B|&delete_buckets=1]`` remove a user; one who owns
  buckets hands them to B, or has them deleted with their objects, else is refused
  (:mod:`stratum.service.user_removal`, as ``stratum user remove``)
- ``GET  /_stratum/replication/status``      per replication target: queue, lag, errors

A parameter out of its range (``limit`` is 1 to 10,000, 100 if absent; ``tier``; a missing
``bucket``) is refused with 400 ``InvalidArgument`` naming it; pinning a bucket that does not
exist with 404 ``NoSuchBucket``.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from stratum import auth
from stratum.maintenance.scrub import Maintenance
from stratum.s3.errors import S3Error
from stratum.s3.server import user_secrets
from stratum.service.user_removal import StillWriting, UserOwnsBuckets, remove_user
from stratum.service.users import (
    User,
    UserDirectory,
    UserInfo,
    new_access_key,
    new_secret_key,
)
from stratum.tiering.decisions import read_decisions
from stratum.tiering.engine import TierEngine
from stratum.util.clock import Clock

PREFIX = "/_stratum/"
MAX_LOG_LIMIT = 10_000  # decisions per answer
MAX_CLASSES_LISTED = 10_000  # learned classes per answer (the learner keeps at most as many)


class AdminApi:
    def __init__(
        self,
        maintenance: Maintenance,
        users: UserDirectory,
        region: str,
        clock: Clock,
        tiering: TierEngine | None = None,
        replication: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.maintenance = maintenance
        self.tiering = tiering
        self.replication = replication  # per target status (blocking), when replicating
        self.users = users
        self.region = region
        self.clock = clock

    def _authorize(self, request: web.Request, query: list[tuple[str, str]]) -> None:
        raw_path = request.raw_path.partition("?")[0]
        view = auth.RequestView.from_wire(request.method, raw_path, query, request.headers.items())
        signed = auth.authenticate(  # the CLI signs with SigV4: no SigV2 here
            view,
            user_secrets(self.users),
            region=self.region,
            now=self.clock.now(),
            allow_sigv2=False,
        )
        if signed is None:
            raise S3Error("AccessDenied")
        if signed.access_key != self.users.root.access_key:
            raise S3Error("AccessDenied", "The admin API is for the root user only")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = parse_qsl(request.raw_path.partition("?")[2], keep_blank_values=True)
        self._authorize(request, query)
        params = dict(query)
        route = (request.method, request.path[len(PREFIX) :])
        if route == ("GET", "status"):
            # Reads LMDB and asks every disk's filesystem for its usage: not on the loop.
            loop = asyncio.get_running_loop()
            return _json(await loop.run_in_executor(None, self.maintenance.status))
        if route == ("POST", "scrub"):
            figures = await self.maintenance.scrub(
                bucket=params.get("bucket") or None, key=params.get("key") or None
            )
            return _json(vars(figures))
        if route[1].startswith("users"):
            return await self._users(route, params)
        if route == ("GET", "replication/status"):
            loop = asyncio.get_running_loop()  # walks the queue
            replication = self.replication or list
            return _json(await loop.run_in_executor(None, replication))
        if self.tiering is not None:
            response = await self._tiering(route, params)
            if response is not None:
                return response
        raise S3Error("InvalidRequest", f"no admin operation {request.method} {request.path}")

    async def _tiering(self, route: tuple[str, str], params: dict[str, str]) -> web.Response | None:
        engine = self.tiering
        assert engine is not None
        if route == ("GET", "explain"):
            return _json(
                engine.explain(
                    params.get("bucket", ""), params.get("key", ""), params.get("version") or None
                )
            )
        if route == ("GET", "tier/log"):
            limit = _whole_number(params, "limit", 100, MAX_LOG_LIMIT)
            records = engine.meta.read(
                lambda tx: read_decisions(
                    tx,
                    bucket=params.get("bucket") or None,
                    key=params.get("key") or None,
                    limit=limit,
                )
            )
            return _json(records)
        if route == ("GET", "tier/classes"):
            return _json(engine.classes(_whole_number(params, "limit", 100, MAX_CLASSES_LISTED)))
        if route == ("POST", "tier/run"):
            await engine.service.flush_access_everywhere()
            return _json(vars(await engine.run_pass()))
        if route == ("PUT", "tier/pin"):
            tier = params.get("tier", "")
            if tier not in ("", "hot", "warm", "cold"):
                raise S3Error("InvalidArgument", "tier must be hot, warm, cold or empty")
            bucket = params.get("bucket", "")
            if not bucket:
                raise S3Error(
                    "InvalidArgument", "bucket is required", extra=_argument("bucket", "")
                )
            try:
                await engine.pin_bucket(bucket, tier)
            except KeyError:  # what the engine raises for a bucket that does not exist
                raise S3Error("NoSuchBucket", extra={"BucketName": bucket}) from None
            return _json({"bucket": bucket, "pin": tier or None})
        return None

    async def _users(self, route: tuple[str, str], params: dict[str, str]) -> web.Response:
        users = self.users
        access_key = params.get("access_key", "")
        loop = asyncio.get_running_loop()
        try:
            if route == ("GET", "users"):
                listed = await loop.run_in_executor(None, users.list)
                return _json([_public(u, u.access_key == users.root.access_key) for u in listed])
            if route == ("POST", "users"):
                add = functools.partial(
                    users.add,
                    access_key or new_access_key(),
                    new_secret_key(),
                    params.get("name", ""),
                    self.clock.now(),
                )
                user = await loop.run_in_executor(None, add)
                return _json({**_public(user, False), "secret_key": user.secret_key})
            if route == ("POST", "users/rotate"):
                secret = new_secret_key()
                await loop.run_in_executor(None, users.set_secret, access_key, secret)
                return _json({"access_key": access_key, "secret_key": secret})
            if route == ("DELETE", "users"):
                remove = functools.partial(
                    remove_user,
                    users,
                    access_key,
                    to=params.get("to", ""),
                    delete_buckets=params.get("delete_buckets") == "1",
                )
                removal = await loop.run_in_executor(None, remove)
                return _json(
                    {"removed": access_key, "buckets": removal.buckets, "heir": removal.heir}
                )
        except (ValueError, LookupError, UserOwnsBuckets) as exc:
            raise S3Error("InvalidArgument", str(exc.args[0])) from None
        except StillWriting as exc:
            raise S3Error("OperationAborted", str(exc.args[0])) from None
        raise S3Error("InvalidRequest", f"no admin operation {route[0]} /_stratum/{route[1]}")


def _public(user: User | UserInfo, root: bool) -> dict[str, Any]:
    return {
        "access_key": user.access_key,
        "display_name": user.display_name,
        "canonical_id": user.canonical_id,
        "root": root,
    }


def _whole_number(params: dict[str, str], name: str, default: int, most: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= most:
        raise S3Error(
            "InvalidArgument",
            f"{name} must be a whole number from 1 to {most}",
            extra=_argument(name, raw),
        )
    return int(raw)


def _argument(name: str, value: str) -> dict[str, str]:
    return {"ArgumentName": name, "ArgumentValue": value}


def _json(value: Any) -> web.Response:
    return web.Response(text=json.dumps(value, indent=2), content_type="application/json")
