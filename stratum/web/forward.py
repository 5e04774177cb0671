"""A worker process hands what has one answer per server to the primary process.

With several server processes (``server.workers``, see :mod:`stratum.cli.workers`) a
connection lands on any of them. S3 requests are served where they land; the admin API
(``/_stratum/``: scrub, tiering, status) and ``/metrics`` describe the whole server, whose
background tasks run in the primary only, so a worker forwards them, unchanged (method,
path, query, headers including ``Host`` and the signature, body), to the primary's private
loopback port and returns its answer. The primary checks the signature as usual.

Request metrics are per process. Every worker writes its own to a small JSON file in the
server's run directory every :data:`PUBLISH_INTERVAL` seconds while they change
(:class:`MetricsPublisher`; nothing while idle), and the primary, when it makes an answer to
``/metrics``, reads them and adds them to its own (:func:`read_peer_metrics`): a scrape
makes no process write anything. Format version 1::

    {"v": 1, "pid": <worker pid>, "metrics": <RequestMetrics.snapshot()>}
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from stratum.s3.errors import S3Error
from stratum.web.observe import RequestMetrics

log = logging.getLogger("stratum.forward")

METRICS_FORMAT = 1
PUBLISH_INTERVAL = 2.0  # seconds between a worker's publications while its counts change
MAX_FORWARDED_BODY = 8 << 20  # admin requests carry no object data
# Hop-by-hop headers (RFC 9110 7.6.1) and what aiohttp recomputes for the new message.
_DROP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


class PrimaryForwarder:
    """Forwards requests to the primary at ``127.0.0.1:port`` (one connection pool).

    The primary logs and counts the requests it answers; the worker that forwards does not.
    """

    def __init__(self, port: int, body_timeout: float = 30.0) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.body_timeout = body_timeout  # as [server] body_timeout bounds an S3 body's reads
        self._session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        body = None
        if request.can_read_body:
            try:
                async with asyncio.timeout(self.body_timeout):
                    body = await request.read()
            except TimeoutError:
                raise S3Error("RequestTimeout") from None
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _DROP]
        async with self._session.request(
            request.method,
            self.base + request.raw_path,
            headers=headers,
            data=body,
            allow_redirects=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        ) as answer:
            payload = await answer.read()
            out = web.Response(status=answer.status, body=payload)
            for name, value in answer.headers.items():
                if name.lower() not in _DROP and name.lower() not in ("date", "server"):
                    out.headers.add(name, value)
            return out

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class MetricsPublisher:
    """A worker's request metrics, written to ``path`` when they changed since last time
    (called every :data:`PUBLISH_INTERVAL` seconds)."""

    def __init__(self, metrics: RequestMetrics, path: Path) -> None:
        self.metrics = metrics
        self.path = path
        self._published = 0  # metrics.observed when last written

    async def publish(self) -> None:
        observed = self.metrics.observed
        if observed == self._published:
            return
        snapshot = self.metrics.snapshot()
        await asyncio.get_running_loop().run_in_executor(None, write_metrics, self.path, snapshot)
        self._published = observed


def metrics_file(run_dir: Path, index: int) -> Path:
    return run_dir / f"metrics-{index}.json"


def write_metrics(path: Path, snapshot: dict[str, Any]) -> None:
    """Blocking: replace ``path`` atomically (the primary may read it at any moment)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"v": METRICS_FORMAT, "pid": os.getpid(), "metrics": snapshot}))
    os.replace(tmp, path)


def read_peer_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Blocking: the snapshots the workers published (unreadable ones are skipped)."""
    out = []
    for path in sorted(run_dir.glob("metrics-*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("v") == METRICS_FORMAT:
            out.append(doc["metrics"])
    return out
