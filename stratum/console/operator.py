"""The root user's pages: overview, tiers (history, moves, decisions, cost, what-if), users
and replication.

Live status, explanations, the decision log and user changes come from the admin API
(``/_stratum/``, signed with the root keys: the same checks and access log as the ``stratum``
command's calls); the charts from the console's own history (:mod:`stratum.console.history`)
and the what-if from its recorded accesses (:mod:`stratum.console.accesses`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from stratum.config import Config
from stratum.console import format as fmt
from stratum.console import whatif
from stratum.console.accesses import extent, recorded
from stratum.console.app import Console, require_root
from stratum.console.charts import line_chart
from stratum.console.history import History, TierFigures
from stratum.meta.store import MetaStore
from stratum.tiering.pricing import GB, Prices

log = logging.getLogger("stratum.console")

DAY = 86400.0
RANGES = {  # ?range= -> (ring, seconds shown, label)
    "hours": ("m", 2 * DAY, "48 hours"),
    "days": ("h", 90 * DAY, "90 days"),
    "months": ("d", 3 * 365 * DAY, "3 years"),
}
GROWTH_WINDOW = 7 * DAY  # days-until-full extrapolates the growth seen over this long
MOVE_DAYS = 14
TIER_ORDER = ("hot", "warm", "cold")


class OperatorPages:
    def __init__(self, console: Console, history: History, config: Config) -> None:
        self.console = console
        self.client = console.client
        self.history = history
        self.meta: MetaStore = history.meta
        self.config = config
        self.prices = Prices.from_config(config.prices)
        console.bucket_totals = lambda: history.census.buckets
        self._pass: asyncio.Task[Any] | None = None

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/overview", self.overview)
        r.add_get("/tiers", self.tiers)
        r.add_get("/tiers/whatif", self.whatif)
        r.add_post("/tiers/run", self.run_pass)
        r.add_get("/users", self.users)
        r.add_post("/users", self.add_user)
        r.add_post("/users/rotate", self.rotate_user)
        r.add_post("/users/remove", self.remove_user)
        r.add_get("/replication", self.replication)

    async def _admin(self, method: str, path: str, query: Sequence[tuple[str, str]] = ()) -> Any:
        return await self.client.admin(self.console.root_creds, method, path, query)

    # -- overview ---------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        require_root(request)
        status = await self._admin("GET", "status")
        census = self.history.census
        growth = self._growth()
        tiers = []
        for name in _ordered(census.tiers):
            figures = census.tiers[name]
            tiers.append(
                {
                    "name": name,
                    "f": figures,
                    "overhead": figures.raw / figures.bytes if figures.bytes else None,
                    "fill": figures.used / figures.total if figures.total else None,
                    "days_left": days_until_full(figures, growth.get(name)),
                }
            )
        disks = status["disks"]
        problems = needing_attention(disks)
        return self.console.render(
            request,
            "overview.html",
            tiers=tiers,
            disks=disks,
            scrub=status["scrub"],
            heal=status["heal"],
            healthy=not problems,
            problems=len(problems),
            counted_at=self.history.counted_at,
        )

    def _growth(self) -> dict[str, float]:
        """Bytes used per day, per tier, over the last GROWTH_WINDOW (a straight line)."""
        now = self.console.clock.now()
        samples = self.history.ring("h", now - GROWTH_WINDOW)
        if len(samples) < 3:
            samples = self.history.ring("m", now - GROWTH_WINDOW)
        return growth_per_day(samples)

    # -- tiers ------------------------------------------------------------------------

    async def tiers(self, request: web.Request) -> web.Response:
        require_root(request)
        return await self._tiers_page(request, None, None)

    async def _tiers_page(
        self,
        request: web.Request,
        outcomes: list[whatif.Outcome] | None,
        error: str | None,
    ) -> web.Response:
        chosen = request.query.get("range", "hours")
        ring, seconds, label = RANGES.get(chosen, RANGES["hours"])
        now = self.console.clock.now()
        loop = asyncio.get_running_loop()
        samples = await loop.run_in_executor(None, self.history.ring, ring, now - seconds)
        names = _ordered({n for s in samples for n in s["tiers"]})
        series = {
            kind: {
                n: [(s["at"], s["tiers"][n][kind]) for s in samples if n in s["tiers"]]
                for n in names
            }
            for kind in ("bytes", "objects")
        }
        charts = {
            "bytes": line_chart(series["bytes"], fmt.size, f"Object bytes per tier, {label}"),
            "objects": line_chart(series["objects"], fmt.count, f"Objects per tier, {label}"),
        }
        decisions = await self._admin("GET", "tier/log", [("limit", "15")])
        costs = monthly_costs(self.history.census.tiers, self.prices)
        return self.console.render(
            request,
            "tiers.html",
            ranges=RANGES,
            chosen=chosen if chosen in RANGES else "hours",
            charts=charts,
            names=names,
            moves=await loop.run_in_executor(None, self._moves_per_day, now),
            decisions=decisions,
            costs=costs,
            prices=self.prices,
            recorded=self.meta.read(extent),
            fields=whatif.FIELDS,
            form=dict(request.query) or whatif.form_values(self.config.tiering),
            outcomes=outcomes,
            error=error,
            pass_started=request.query.get("pass") == "started",
            pass_running=self._pass is not None and not self._pass.done(),
        )

    def _moves_per_day(self, now: float) -> list[tuple[str, dict[str, int]]]:
        """[(day, {"hot->warm": n, ...})] for the last MOVE_DAYS days, newest first."""
        samples = self.history.ring("h", now - (MOVE_DAYS + 1) * DAY) + self.history.ring(
            "m", now - DAY
        )
        last_of_day: dict[int, dict[str, int]] = {}
        for sample in sorted(samples, key=lambda s: float(s["at"])):
            last_of_day[int(sample["at"] // DAY)] = sample["moves"]
        out = []
        days = sorted(last_of_day)
        for before, day in zip([None, *days], days, strict=False):
            totals = last_of_day[day]
            previous = last_of_day[before] if before is not None else {}
            moved = {p: n - previous.get(p, 0) for p, n in totals.items() if n > previous.get(p, 0)}
            out.append((fmt.when(day * DAY)[:10], moved))
        return out[::-1][:MOVE_DAYS]

    async def run_pass(self, request: web.Request) -> web.StreamResponse:
        """Start a tiering pass (it may take long: the page does not wait for it)."""
        require_root(request)
        if self._pass is None or self._pass.done():
            self._pass = asyncio.create_task(self._admin("POST", "tier/run"))
            self._pass.add_done_callback(_log_pass)
        raise web.HTTPSeeOther("/tiers?pass=started")

    async def whatif(self, request: web.Request) -> web.Response:
        require_root(request)
        current = self.config.tiering
        try:
            proposed = whatif.changed_config(current, request.query)
        except ValueError as exc:
            return await self._tiers_page(request, None, str(exc))
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(None, recorded, self.meta)
        tiers = set(self.history.node.tiers) | (
            {"cold"} if self.config.tiers.cold.enabled else set()
        )
        outcomes = await loop.run_in_executor(
            None, whatif.compare, rows, current, proposed, tiers, self.prices
        )
        return await self._tiers_page(request, outcomes, None)

    # -- users ------------------------------------------------------------------------

    async def users(
        self, request: web.Request, shown: dict[str, Any] | None = None
    ) -> web.Response:
        require_root(request)
        listed = await self._admin("GET", "users")
        return self.console.render(request, "users.html", users=listed, shown=shown)

    async def add_user(self, request: web.Request) -> web.Response:
        require_root(request)
        form = await request.post()
        query = [
            ("access_key", str(form.get("access_key", "")).strip()),
            ("name", str(form.get("name", "")).strip()),
        ]
        created = await self._admin("POST", "users", query)
        return await self.users(request, shown={**created, "action": "added"})

    async def rotate_user(self, request: web.Request) -> web.Response:
        require_root(request)
        access_key = str((await request.post()).get("access_key", ""))
        rotated = await self._admin("POST", "users/rotate", [("access_key", access_key)])
        self.console.sessions.end_user(access_key)
        return await self.users(request, shown={**rotated, "action": "given a new secret key"})

    async def remove_user(self, request: web.Request) -> web.StreamResponse:
        require_root(request)
        form = await request.post()
        access_key = str(form.get("access_key", ""))
        query = [("access_key", access_key)]
        buckets = form.get("buckets", "")
        if buckets == "root":
            query.append(("to", self.console.root_creds.access_key))
        elif buckets == "delete":
            query.append(("delete_buckets", "1"))
        await self._admin("DELETE", "users", query)
        self.console.sessions.end_user(access_key)
        raise web.HTTPSeeOther("/users")

    async def replication(self, request: web.Request) -> web.Response:
        """Each ``[replication.<name>]`` target's queue, lag and errors (the admin API's
        ``replication/status``, as ``stratum replication status`` prints it)."""
        require_root(request)
        targets = await self._admin("GET", "replication/status")
        return self.console.render(
            request, "replication.html", targets=targets if isinstance(targets, list) else []
        )


def _log_pass(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("tiering pass started from the console failed: %s", error)
    else:
        report = task.result()
        log.info(
            "tiering pass from the console: moved %s of %s", report["moved"], report["decided"]
        )


def _ordered(names: Mapping[str, Any] | set[str]) -> list[str]:
    return sorted(names, key=lambda n: (TIER_ORDER.index(n) if n in TIER_ORDER else 9, n))


def monthly_costs(tiers: Mapping[str, TierFigures], prices: Prices) -> dict[str, float]:
    """Each tier's storage cost per month at ``prices`` (object bytes; the cold tier stores
    each object once, so its bill follows them), hot to cold."""
    return {n: tiers[n].bytes / GB * prices.storage.get(n, 0.0) for n in _ordered(tiers)}


def needing_attention(disks: Sequence[Mapping[str, Any]]) -> set[str]:
    """Ids of the disks (as the admin API's status lists them) that are not online, or whose
    ZFS pool is not ONLINE (DEGRADED, FAULTED...: a directory's health is ONLINE or "-")."""
    return {
        str(d["id"])
        for d in disks
        if not str(d["state"]).startswith("online")
        or d.get("health", "ONLINE") not in ("ONLINE", "-")
    }


def growth_per_day(samples: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Bytes used per day, per tier of the latest sample: the least-squares line through the
    samples' ``used`` figures (the history's samples, oldest first)."""
    out: dict[str, float] = {}
    if len(samples) < 2:
        return out
    for name in samples[-1]["tiers"]:
        points = [(s["at"], s["tiers"][name]["used"]) for s in samples if name in s["tiers"]]
        slope = least_squares_slope(points)
        if slope is not None:
            out[name] = slope * DAY
    return out


def least_squares_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of value over time (per second)."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var <= 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var


def days_until_full(figures: TierFigures, per_day: float | None) -> float | None:
    """Days until the tier is full at the growth seen, None when it is not growing."""
    if per_day is None or per_day <= 0 or not figures.total:
        return None
    return figures.free / per_day
