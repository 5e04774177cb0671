"""Operating Stratum: Prometheus metrics and health checks on the S3 port.

- ``GET /metrics``: Prometheus text format 0.0.4 (:func:`render`). Requests by operation and
  status, latency histograms by operation and bytes in and out are counted as requests end;
  objects and bytes per tier, tier moves, scrub and heal progress, disk states and process
  figures are read when the answer is made. An answer is made at most every
  :data:`METRICS_MAX_AGE` seconds and served from memory meanwhile: a scrape writes nothing,
  and a flood of scrapes costs no more than one. With several server processes the primary
  answers every scrape and adds the workers' request counts as they last published them
  (every few seconds while they change: :mod:`stratum.web.forward`); process figures
  (memory, file descriptors) are the primary's own. ``/health/ready`` is the primary's answer
  too; ``/health/live`` is answered by whichever process gets the connection.
- ``GET /health/live``: 200 while the process serves HTTP.
- ``GET /health/ready``: 200 once the node is started and the hot tier has enough disks
  online for writes; 503 with a JSON reason otherwise (and while shutting down). A node that
  serves but has volumes it could not repair, or disks offline, stays ready, with a list
  under ``"degraded"``: on a node that is the only holder of its data, taking it out of a
  load balancer would make every object unreachable to spare a few (the metrics alert).

Who may scrape (:class:`MetricsAccess`, ``[server] metrics_token`` and
``metrics_loopback_only``): anyone by default; with a token, only requests carrying
``Authorization: Bearer <token>`` (others get 401); loopback-only, only connections from this
machine (others get 403). Disk paths are shown (label ``disk``) only to a scrape that carried
the token; every scrape gets each disk's id (label ``id``). The health checks stay open.

These paths are also valid path-style S3 requests (ListObjects of a bucket named "metrics",
GetObject of "health/live"). They are answered here only when the request carries no S3
authentication at all (no ``Authorization`` header other than a metrics ``Bearer`` token; no
``X-Amz-Signature``, ``X-Amz-Credential``, ``Signature`` or ``AWSAccessKeyId`` query parameter
of a presigned URL), for GET and HEAD, on the service host (not on a bucket's virtual host).
Anything signed stays S3, so a bucket named "metrics" keeps working for its owner; an
anonymous S3 request for it would be refused anyway.

Objects and bytes per tier are counted from the metadata store's volumes (objects, and parts
of multipart uploads in progress) in an executor, in pages, at most every
:data:`TIER_COUNT_INTERVAL` seconds (longer when counting takes long), never per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import ipaddress
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from stratum import __version__
from stratum.block.tierstore import TierStore
from stratum.maintenance.scrub import Maintenance
from stratum.meta import catalog
from stratum.meta.store import MetaStore
from stratum.s3.router import virtual_host_bucket
from stratum.s3.server import FinishedRequest
from stratum.tiering.engine import TierEngine
from stratum.util.pacing import Pacer
from stratum.web.prometheus import Counter, Family, Histogram, render
from stratum.web.replication_metrics import replication_families

log = logging.getLogger("stratum.observe")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH = "/metrics"
LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"
PATHS = frozenset({METRICS_PATH, LIVE_PATH, READY_PATH})
# Query parameters of a presigned URL, SigV4 and SigV2 (compared in lowercase).
SIGNED_QUERY = frozenset({"x-amz-signature", "x-amz-credential", "signature", "awsaccesskeyid"})
# Seconds; S3 requests range from sub-millisecond HEADs to multi-minute uploads.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0
)  # fmt: skip
TIER_COUNT_INTERVAL = 30.0
FIRST_COUNT_WAIT = 2.0  # seconds a first scrape waits for the first count (then goes without)
METRICS_MAX_AGE = 5.0  # seconds an answer to /metrics is served again before a new one is made
TIER_COUNT_PAGE = 1000  # volumes per read transaction (short: the map can still grow) and stretch

# -- what requests do -------------------------------------------------------------------


class RequestMetrics:
    """Counted as each S3 request ends (cheap: dictionary updates on the event loop)."""

    def __init__(self) -> None:
        self.observed = 0  # requests counted: whether the figures changed since some time
        self.requests = Counter(
            "stratum_s3_requests_total",
            "S3 requests by operation and HTTP status.",
            ("operation", "status"),
        )
        self.latency = Histogram(
            "stratum_s3_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by operation.",
            ("operation",),
            LATENCY_BUCKETS,
        )
        self.received = Counter(
            "stratum_s3_received_bytes_total",
            "Request body bytes received (object data), by operation.",
            ("operation",),
        )
        self.sent = Counter(
            "stratum_s3_sent_bytes_total",
            "Response body bytes sent, by operation.",
            ("operation",),
        )

    def observe(
        self, operation: str, status: int, seconds: float, bytes_in: int, bytes_out: int
    ) -> None:
        self.observed += 1
        self.requests.inc(operation, str(status))
        self.latency.observe(seconds, operation)
        if bytes_in:
            self.received.inc(operation, amount=bytes_in)
        if bytes_out:
            self.sent.inc(operation, amount=bytes_out)

    def families(self) -> list[Family]:
        return [f.family() for f in (self.requests, self.latency, self.received, self.sent)]

    def snapshot(self) -> dict[str, Any]:
        """Every value, as JSON-able lists (for another process to add up)."""
        counters = {c.name: [[list(k), v] for k, v in c.values.items()] for c in self._counters}
        return {
            "counters": counters,
            "latency": [[list(k), c, t[0]] for k, (c, t) in self.latency.values.items()],
        }

    def add(self, snapshot: Mapping[str, Any]) -> None:
        """Add another process's :meth:`snapshot` to these values."""
        by_name = {c.name: c for c in self._counters}
        for name, values in snapshot.get("counters", {}).items():
            counter = by_name.get(name)
            if counter is not None:
                for labels, value in values:
                    counter.inc(*labels, amount=value)
        for labels, counts, total in snapshot.get("latency", []):
            slot = self.latency.values.setdefault(
                tuple(labels), ([0] * (len(self.latency.bounds) + 1), [0.0])
            )
            if len(counts) == len(slot[0]):
                slot[0][:] = [a + b for a, b in zip(slot[0], counts, strict=True)]
                slot[1][0] += total

    @property
    def _counters(self) -> tuple[Counter, ...]:
        return (self.requests, self.received, self.sent)


# -- objects and bytes per tier ---------------------------------------------------------


def count_volumes(
    meta: MetaStore, page: int = TIER_COUNT_PAGE, pacer: Pacer | None = None
) -> dict[str, tuple[int, int]]:
    """{tier: (volumes, bytes)} over the whole store (blocking; short transactions; paced
    between pages by ``pacer``, :mod:`stratum.util.pacing`)."""
    totals: dict[str, list[int]] = {}
    for volume in catalog.each_volume(meta, page, pacer):
        slot = totals.setdefault(volume.tier, [0, 0])
        slot[0] += 1
        slot[1] += volume.size
    return {tier: (n, size) for tier, (n, size) in totals.items()}


class TierTotals:
    """A cached :func:`count_volumes`, refreshed in the background when a scrape finds it old.

    The first scrape waits for a count, up to :data:`FIRST_COUNT_WAIT` (a large store's,
    paced behind requests, takes minutes: that scrape goes without the tier gauges rather
    than past Prometheus's timeout); later ones get the last count at once and start a
    new one if it is older than the interval (which grows to 20 times the counting's work, so a
    huge store is not recounted continuously).
    """

    def __init__(self, meta: MetaStore, interval: float = TIER_COUNT_INTERVAL) -> None:
        self.meta = meta
        self.interval = interval
        self.value: dict[str, tuple[int, int]] | None = None
        self.counted_at = 0.0
        self.took = 0.0
        self._task: asyncio.Task[None] | None = None

    async def get(self) -> dict[str, tuple[int, int]]:
        due = time.monotonic() - self.counted_at >= max(self.interval, 20 * self.took)
        if (self.value is None or due) and self._task is None:
            self._task = asyncio.create_task(self._refresh())
        if self.value is None and self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), FIRST_COUNT_WAIT)
        return self.value or {}

    async def _refresh(self) -> None:
        pacer = Pacer()
        try:
            loop = asyncio.get_running_loop()
            count = functools.partial(count_volumes, self.meta, pacer=pacer)
            self.value = await loop.run_in_executor(None, count)
        except Exception:
            log.exception("counting the volumes of each tier failed")
        finally:
            self.counted_at = time.monotonic()
            self.took = pacer.worked  # its work, not its pauses for requests
            self._task = None


# -- process ----------------------------------------------------------------------------


def process_families(started_at: float) -> list[Family]:
    times = os.times()
    rss = _resident_bytes()
    out = [
        Family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.").add(rss),
        Family("process_cpu_seconds_total", "counter", "User and system CPU time spent.").add(
            times.user + times.system
        ),
        Family("process_start_time_seconds", "gauge", "Start of the process, Unix time.").add(
            started_at
        ),
    ]
    fds = _open_fds()
    if fds is not None:
        out.append(Family("process_open_fds", "gauge", "Open file descriptors.").add(fds))
    return out


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        # Elsewhere: the peak, which is what getrusage offers (KiB on Linux, bytes on macOS).
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


# -- maintenance: scrub, heal, disks ----------------------------------------------------

DISK_STATES = ("online", "offline", "rebuilding")
_SCRUB_FIGURES = ("volumes", "bytes", "damaged", "repaired", "unrepaired")


def maintenance_families(status: Mapping[str, Any], *, show_paths: bool = False) -> list[Family]:
    """Families from :meth:`Maintenance.status`; a disk's path is a label with ``show_paths``
    only (see the module docstring), its id always."""
    scrub = status["scrub"]
    out = [
        Family("stratum_scrub_running", "gauge", "1 while a scrub pass runs.").add(
            1 if scrub["running"] else 0
        )
    ]
    figures = Family(
        "stratum_scrub_pass",
        "gauge",
        "Figures of the scrub pass in progress (pass=current) and of the last finished one.",
    )
    for which, values in (("current", scrub.get("current")), ("last", scrub.get("last_pass"))):
        for figure in _SCRUB_FIGURES:
            if values:
                figures.add(float(values.get(figure, 0)), **{"pass": which, "figure": figure})
    out.append(figures)
    last = scrub.get("last_pass") or {}
    out.append(
        Family(
            "stratum_scrub_last_finished_timestamp_seconds",
            "gauge",
            "When the last full scrub pass ended, Unix time (0: never).",
        ).add(float(last.get("finished", 0.0)))
    )
    heal = status["heal"]
    out.append(
        Family("stratum_heal_queued", "gauge", "Volumes waiting to be healed.").add(heal["queued"])
    )
    out.append(
        Family(
            "stratum_heal_unrepaired_volumes",
            "gauge",
            "Volumes the healer could not repair, waiting to be retried.",
        ).add(heal.get("unrepaired", 0))
    )
    out.append(
        Family(
            "stratum_healed_volumes_total", "counter", "Volumes repaired after a damaged read."
        ).add(heal["healed"])
    )
    state = Family(
        "stratum_disk_state",
        "gauge",
        "1 for the state each disk is in (online, offline or rebuilding), else 0.",
    )
    used = Family("stratum_disk_used_bytes", "gauge", "Bytes used on the disk's filesystem.")
    free = Family("stratum_disk_free_bytes", "gauge", "Bytes free on the disk's filesystem.")
    errors = Family("stratum_disk_errors_total", "counter", "Damaged reads met on the disk.")
    for disk in status["disks"]:
        labels = {"tier": disk["tier"], "id": disk["id"][:8]}
        if show_paths:
            labels["disk"] = disk["path"]
        now = str(disk["state"]).split(":")[0]
        for name in DISK_STATES:
            state.add(1 if now == name else 0, **labels, state=name)
        used.add(disk["used_bytes"], **labels)
        free.add(disk["free_bytes"], **labels)
        errors.add(disk["errors"], **labels)
    return [*out, state, used, free, errors]


# -- tiering ----------------------------------------------------------------------------


def move_families(
    moves: Mapping[tuple[str, str, str], int], moved_bytes: Mapping[tuple[str, str], int]
) -> list[Family]:
    """Families of the tiering engine's moves since the process started."""
    count = Family(
        "stratum_tier_moves_total",
        "counter",
        "Tier moves by source and target tier and outcome (moved or failed).",
    )
    for (source, target, outcome), n in sorted(moves.items()):
        count.add(n, **{"from": source, "to": target, "outcome": outcome})
    size = Family("stratum_tier_moved_bytes_total", "counter", "Object bytes moved between tiers.")
    for (source, target), n in sorted(moved_bytes.items()):
        size.add(n, **{"from": source, "to": target})
    return [count, size]


# -- the endpoints ----------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsAccess:
    """Who may read ``/metrics`` (``[server] metrics_token``, ``metrics_loopback_only``)."""

    token: str = ""
    loopback_only: bool = False

    def refusal(self, request: web.Request) -> web.Response | None:
        """The answer for a scrape that may not read the metrics; None if it may."""
        if self.loopback_only and not _from_loopback(request):
            return _json(403, {"status": "forbidden", "reason": "metrics are for this machine"})
        if self.token and not self.carries_token(request):
            refused = _json(401, {"status": "unauthorized", "reason": "a bearer token is needed"})
            refused.headers["WWW-Authenticate"] = 'Bearer realm="stratum-metrics"'
            return refused
        return None

    def carries_token(self, request: web.Request) -> bool:
        offered = _bearer(request)
        return (
            bool(self.token)
            and offered is not None
            and hmac.compare_digest(offered.encode(), self.token.encode())
        )


def _bearer(request: web.Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _from_loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address((request.remote or "").partition("%")[0]).is_loopback
    except ValueError:
        return False


class Observer:
    """Metrics and health for one node.

    The web layer hands it unsigned requests for :data:`PATHS`; the S3 server reports each
    request it finished to :meth:`count`. ``clock`` (monotonic seconds) dates the answers
    to ``/metrics`` that are served again.
    """

    def __init__(
        self,
        meta: MetaStore,
        tiers: Mapping[str, TierStore],
        maintenance: Maintenance | None,
        *,
        domain: str = "",
        access: MetricsAccess | None = None,
        clock: Callable[[], float] = time.monotonic,
        tiering: TierEngine | None = None,
    ) -> None:
        self.meta = meta
        self.tiering = tiering
        self.tiers = tiers
        self.maintenance = maintenance
        self.domain = domain
        self.access = access or MetricsAccess()
        self._clock = clock
        # show_paths -> (made at, text); the answer being made, shared by scrapes meanwhile
        self._answers: dict[bool, tuple[float, bytes]] = {}
        self._making: dict[bool, asyncio.Task[bytes]] = {}
        self.requests = RequestMetrics()
        self.tier_totals = TierTotals(meta)
        self.started_at = time.time()
        self.serving = False  # set by the server once it listens, cleared when it stops
        # With several server processes (stratum.web.forward): a worker hands /metrics to the
        # primary (``forward``); the primary adds the workers' request metrics (``peers``).
        self.forward: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        self.peers: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None
        # per replication target status (blocking: walks the queue), when replicating
        self.replication: Callable[[], list[dict[str, Any]]] | None = None

    # -- routing

    def answers(self, request: web.Request) -> bool:
        """Whether this is a metrics or health request rather than an S3 one."""
        if request.method not in ("GET", "HEAD") or request.path not in PATHS:
            return False
        if "Authorization" in request.headers and not (
            request.path == METRICS_PATH and _bearer(request) is not None  # never S3's
        ):
            return False
        query = request.raw_path.partition("?")[2]
        if any(k.lower() in SIGNED_QUERY for k, _ in parse_qsl(query, keep_blank_values=True)):
            return False
        return virtual_host_bucket(request.host, self.domain) is None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == LIVE_PATH:
            return _json(200, {"status": "live"})
        if request.path == METRICS_PATH:
            refused = self.access.refusal(request)  # here: a worker sees the real client
            if refused is not None:
                return refused
        if self.forward is not None:
            # A worker: readiness (disk states) and metrics are the whole server's, and the
            # primary's answer keeps them consistent with each other.
            return await self.forward(request)
        if request.path == READY_PATH:
            reason = self.not_ready()
            if reason:
                return _json(503, {"status": "not ready", "reason": reason})
            degraded = self.maintenance.degraded() if self.maintenance is not None else []
            return _json(200, {"status": "ready", **({"degraded": degraded} if degraded else {})})
        body = await self._metrics(show_paths=self.access.carries_token(request))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _metrics(self, *, show_paths: bool) -> bytes:
        """The text of ``/metrics``, made at most every :data:`METRICS_MAX_AGE` seconds."""
        answer = self._answers.get(show_paths)
        if answer is not None and self._clock() - answer[0] < METRICS_MAX_AGE:
            return answer[1]
        task = self._making.get(show_paths)
        if task is None:
            task = self._making[show_paths] = asyncio.create_task(self._make(show_paths))
        return await asyncio.shield(task)

    async def _make(self, show_paths: bool) -> bytes:
        started = self._clock()
        try:
            text = render(await self.families(show_paths=show_paths)).encode()
            self._answers[show_paths] = (started, text)
            return text
        finally:
            del self._making[show_paths]

    # -- health

    def not_ready(self) -> str:
        """Why the node cannot take writes now ("" when it can)."""
        if not self.serving:
            return "not serving (starting or shutting down)"
        hot = self.tiers.get("hot")
        if hot is None:
            return "no hot tier"
        online, needed = hot.online_count(), hot.min_disks_for_writes()
        if online < needed:
            return f"hot tier has {online} disk(s) online, writes need {needed}"
        return ""

    # -- metrics

    def count(self, done: FinishedRequest) -> None:
        """Count a finished S3 request (the S3 server's ``on_finished``)."""
        self.requests.observe(
            done.operation, done.status, done.seconds, done.bytes_in, done.bytes_out
        )

    async def families(self, *, show_paths: bool = False) -> list[Family]:
        loop = asyncio.get_running_loop()
        status: Mapping[str, Any] | None = None
        if self.maintenance is not None:
            # Reads LMDB and asks every disk's filesystem for its usage: not on the loop.
            status = await loop.run_in_executor(None, self.maintenance.status)
        totals = await self.tier_totals.get()
        requests = self.requests
        if self.peers is not None:
            requests = RequestMetrics()
            requests.add(self.requests.snapshot())
            for snapshot in await self.peers():
                requests.add(snapshot)
        out = [
            Family("stratum_build_info", "gauge", "Stratum's version (the value is 1).").add(
                1, version=__version__, python=".".join(map(str, sys.version_info[:3]))
            ),
            Family("stratum_ready", "gauge", "1 when /health/ready answers 200.").add(
                0 if self.not_ready() else 1
            ),
            *requests.families(),
            *self._tier_families(totals),
            Family("stratum_meta_commits_total", "counter", "Metadata store commits.").add(
                self.meta.commits
            ),
        ]
        if status is not None:
            out += maintenance_families(status, show_paths=show_paths)
        if self.tiering is not None:
            out += move_families(self.tiering.moves, self.tiering.moved_bytes)
        if self.replication is not None:
            out += replication_families(await loop.run_in_executor(None, self.replication))
        out += process_families(self.started_at)
        return out

    def _tier_families(self, totals: Mapping[str, tuple[int, int]]) -> list[Family]:
        objects = Family(
            "stratum_tier_objects",
            "gauge",
            "Volumes stored in each tier: objects, and parts of multipart uploads in progress "
            "(counted every 30 s or so).",
        )
        stored = Family(
            "stratum_tier_bytes", "gauge", "Object bytes stored in each tier (before coding)."
        )
        disks = Family("stratum_tier_disks", "gauge", "Disks of each local tier.")
        online = Family("stratum_tier_disks_online", "gauge", "Disks of each tier online.")
        needed = Family(
            "stratum_tier_disks_needed_for_writes", "gauge", "Online disks new writes need."
        )
        for name in sorted({*self.tiers, *totals}):
            count, size = totals.get(name, (0, 0))
            objects.add(count, tier=name)
            stored.add(size, tier=name)
            tier = self.tiers.get(name)
            if tier is not None:
                disks.add(len(tier.disks), tier=name)
                online.add(tier.online_count(), tier=name)
                needed.add(tier.min_disks_for_writes(), tier=name)
        return [objects, stored, disks, online, needed]


def _json(status: int, value: Mapping[str, Any]) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(value),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
