"""The workloads, run the same way against every server.

Requests come from ``bench.loadgen``: one asyncio event loop (uvloop) in this process, one
HTTP/1.1 keep-alive connection per simulated client, every request signed with SigV4, so
the client costs a small fraction of what the server spends (boto3 threads cost more than
the servers and set the pace on a small machine). All clients start together. A request's
latency runs from the moment it is written to the last byte of the response body. Every
GET body is compared with the bytes that were PUT as it arrives (a memcmp per piece).

LIST requests, rare and heavy, still go through boto3 (one client, in this thread): their
latency is the wire time, and the run also keeps the time including boto3's parsing.

Throughput (ops/s, MB/s) is the sum over clients of what each moved divided by the time it
spent inside requests; with one client that is plain ops / time. ``wall_*`` in the JSON is
the same over the wall clock of the whole run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from bench.loadgen import EMPTY, Body, Connection, Payloads, new_loop
from bench.procstat import RssSampler, machine_busy_seconds
from bench.servers import Server
from bench.signer import Signer

KiB = 1024
MiB = 1024 * KiB


def make_client(server: Server) -> Any:
    """A boto3 client for the requests that are not timed and for LIST;
    ``client.bench_stamps`` times its last request from the moment it is sent to the moment
    its response body is in (before parsing)."""
    session = boto3.session.Session()
    client = session.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=BotoConfig(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=600,
            max_pool_connections=2,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    stamps: dict[str, float] = {}

    def sent(**_: Any) -> None:
        stamps["sent"] = time.perf_counter()

    def received(**_: Any) -> None:
        stamps["received"] = time.perf_counter()

    client.meta.events.register("before-send.s3", sent)
    client.meta.events.register("before-parse.s3", received)
    client.bench_stamps = stamps
    return client


# ---------------------------------------------------------------------------- operations


@dataclass(frozen=True)
class Put:
    bucket: str
    key: str
    body: Body

    async def __call__(self, conn: Connection) -> int:
        return await conn.put(self.bucket, self.key, self.body)


@dataclass(frozen=True)
class Get:
    bucket: str
    key: str
    body: Body  # what was PUT: the response must be these bytes

    async def __call__(self, conn: Connection) -> int:
        return await conn.get(self.bucket, self.key, self.body)


@dataclass(frozen=True)
class List:
    bucket: str
    prefix: str
    expect: int

    def __call__(self, client: Any) -> tuple[float, float]:
        """(wire time, time including boto3's parsing): botocore's XML parsing of 1,000
        entries (tens of ms of client CPU, the same for every server) is left out of the
        first."""
        start = time.perf_counter()
        page = client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1000)
        elapsed = time.perf_counter() - start
        if page.get("KeyCount", 0) != self.expect:
            raise AssertionError(f"LIST {self.prefix}: {page.get('KeyCount')} != {self.expect}")
        stamps = client.bench_stamps
        return stamps["received"] - stamps["sent"], elapsed


Op = Put | Get


# ---------------------------------------------------------------------------- running


@dataclass
class ClientStats:
    ops: int = 0
    nbytes: int = 0
    busy: float = 0.0
    latencies: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)  # differs from latencies for LIST only
    errors: int = 0
    first_error: str = ""

    def fail(self, message: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or message[:300]


@dataclass
class Run:
    ops: int
    nbytes: int
    wall: float
    ops_per_s: float
    mb_per_s: float
    wall_ops_per_s: float
    wall_mb_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    first_error: str
    rss_peak: int
    rss_mean: float
    server_cpu_s: float
    client_cpu_s: float = 0.0  # the load generator's thread (all clients), over the run
    others_cpu: float = 0.0  # share of all cores other processes used during the run
    e2e_p50_ms: float = 0.0  # LIST: including the client's parsing of the response
    e2e_p99_ms: float = 0.0
    pss_peak: int = 0  # see bench.procstat: RSS counts pages the processes share once each
    max_ms: float = 0.0  # the slowest request

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def measured(server: Server, drive: Callable[[], list[ClientStats]]) -> Run:
    """Run ``drive`` (which makes the requests and returns per-client stats) while the
    server's RSS and CPU, this thread's CPU and the whole machine's are recorded.

    The client's CPU is this thread's (user + system: the event loop with every client),
    not the RSS sampler's, whose cost grows with time rather than with requests; the rest
    of this process counts with neither the client nor the others."""
    sampler = RssSampler(server.pids).start()
    busy_before, process_before = machine_busy_seconds(), time.process_time()
    cpu_before = time.thread_time()
    start = time.perf_counter()
    stats = drive()
    wall = time.perf_counter() - start
    client_cpu = time.thread_time() - cpu_before
    sampler.stop()
    ours = time.process_time() - process_before
    busy = machine_busy_seconds() - busy_before
    others = max(0.0, busy - ours - sampler.cpu) / (wall * (os.cpu_count() or 1))
    others = min(1.0, others)  # the counters are read at slightly different moments
    latencies = [x for s in stats for x in s.latencies]
    e2e = [x for s in stats for x in s.e2e]
    ops = sum(s.ops for s in stats)
    nbytes = sum(s.nbytes for s in stats)
    errors = sum(s.errors for s in stats)
    return Run(
        ops=ops,
        nbytes=nbytes,
        wall=wall,
        ops_per_s=sum(s.ops / s.busy for s in stats if s.busy > 0),
        mb_per_s=sum(s.nbytes / s.busy for s in stats if s.busy > 0) / 1e6,
        wall_ops_per_s=ops / wall if wall else 0.0,
        wall_mb_per_s=nbytes / wall / 1e6 if wall else 0.0,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        errors=errors,
        first_error=next((s.first_error for s in stats if s.first_error), ""),
        rss_peak=sampler.peak,
        pss_peak=sampler.pss_peak,
        rss_mean=sampler.mean,
        server_cpu_s=sampler.cpu,
        client_cpu_s=client_cpu,
        others_cpu=others,
        e2e_p50_ms=percentile(e2e, 50) * 1000,
        e2e_p99_ms=percentile(e2e, 99) * 1000,
        max_ms=max(latencies, default=0.0) * 1000,
    )


class Clients:
    """The simulated clients: connections to one server, on this process's event loop."""

    def __init__(self, server: Server, count: int = 16) -> None:
        self.loop = new_loop()
        signer = Signer(server.access_key, server.secret_key)
        self.conns = [Connection(server.endpoint, signer) for _ in range(count)]

    def run(self, plans: list[list[Op]]) -> list[ClientStats]:
        """Run ``plans[i]`` on connection i, all starting together (once connected)."""
        return self.loop.run_until_complete(self._run(plans))

    async def _run(self, plans: list[list[Op]]) -> list[ClientStats]:
        conns = self.conns[: len(plans)]
        await asyncio.gather(*(conn.connect() for conn in conns))
        stats = [ClientStats() for _ in plans]
        await asyncio.gather(*(_drive(*job) for job in zip(conns, plans, stats, strict=True)))
        return stats

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.loop.run_until_complete(asyncio.sleep(0))  # let the transports close
        self.loop.close()


async def _drive(conn: Connection, plan: list[Op], mine: ClientStats) -> None:
    clock = time.perf_counter
    for op in plan:
        start = clock()
        try:
            nbytes = await op(conn)
        except Exception as exc:  # a failed request is a result, not a crash
            mine.busy += clock() - start
            mine.fail(f"{type(op).__name__} {op.key}: {exc!r}")
            continue
        elapsed = clock() - start
        mine.busy += elapsed
        mine.latencies.append(elapsed)
        mine.ops += 1
        mine.nbytes += nbytes
    mine.e2e = mine.latencies


def run_ops(server: Server, clients: Clients, plans: list[list[Op]]) -> Run:
    return measured(server, lambda: clients.run(plans))


def run_lists(server: Server, client: Any, ops: list[List]) -> Run:
    """LIST requests one after the other through boto3 (see ``List``)."""

    def drive() -> list[ClientStats]:
        mine = ClientStats()
        for op in ops:
            start = time.perf_counter()
            try:
                wire, elapsed = op(client)
            except Exception as exc:
                mine.busy += time.perf_counter() - start
                mine.fail(f"LIST {op.prefix}: {exc!r}")
                continue
            mine.busy += elapsed
            mine.latencies.append(wire)
            mine.e2e.append(elapsed)
            mine.ops += 1
        return [mine]

    return measured(server, drive)


def idle(server: Server, seconds: float) -> Run:
    """The server with nothing to do: only RSS and CPU are of interest."""
    sampler = RssSampler(server.pids).start()
    time.sleep(seconds)
    sampler.stop()
    return Run(
        0, 0, seconds, 0, 0, 0, 0, 0, 0, 0, "", sampler.peak, sampler.mean, sampler.cpu,
        pss_peak=sampler.pss_peak,
    )  # fmt: skip


def split(items: list[Op], clients: int) -> list[list[Op]]:
    """Round-robin ``items`` over ``clients`` plans."""
    return [items[i::clients] for i in range(clients)]


def delete_keys(server: Server, client: Any, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        chunk = [{"Key": k} for k in keys[start : start + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
    if server.after_delete is not None:
        server.after_delete()


# ---------------------------------------------------------------------------- the workloads


@dataclass(frozen=True)
class Sizes:
    """How much each workload does; ``quick()`` is a smoke run."""

    small_c1: int = 800  # 4 KiB objects at concurrency 1, per run
    small_c16: int = 3200  # ... at concurrency 16
    mixed: int = 3200  # operations of the 80/20 GET/PUT run
    mib1: int = 128  # 1 MiB objects per run (4 clients)
    mib64: int = 16  # 64 MiB objects per run (4 clients)
    mib64_c16: int = 16  # 64 MiB objects per run with 16 clients (one each)
    list_keys: int = 100_000  # keys in the LIST bucket (fewer if the fill runs out of time)
    list_fill_seconds: float = 150.0
    lists: int = 25  # LIST requests per run, at most (fewer if one LIST takes long)
    list_seconds: float = 20.0  # ... so that a run takes about this long
    idle_seconds: float = 3.0
    # A GET run reads every object PUT before it this many times (in a shuffled order): at
    # GB/s or thousands of GETs a second, one pass over 16 x 64 MiB or 800 x 4 KiB is over
    # in half a second or less, too short to measure steadily.
    get_passes: int = 4

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            small_c1=200,
            small_c16=800,
            mixed=800,
            mib1=16,
            mib64=4,
            mib64_c16=16,
            list_keys=5000,
            list_fill_seconds=10.0,
            lists=10,
            list_seconds=5.0,
            idle_seconds=1.0,
            get_passes=1,
        )


@dataclass
class Workload:
    id: str
    title: str
    kind: str  # "ops" (ops/s + latency), "bytes" (MB/s), "list" (ms per LIST), "idle" (RSS)
    runs: list[Run] = field(default_factory=list)
    note: str = ""

    def median(self, attr: str) -> float:
        values = [getattr(r, attr) for r in self.runs]
        return statistics.median(values) if values else 0.0

    def as_dict(self) -> dict[str, Any]:
        summary = {
            attr: self.median(attr)
            for attr in (
                *("ops_per_s", "mb_per_s", "p50_ms", "p99_ms", "e2e_p50_ms", "e2e_p99_ms"),
                *("server_cpu_s", "client_cpu_s", "others_cpu", "ops"),
            )
        }
        summary["rss_peak"] = max((r.rss_peak for r in self.runs), default=0)
        summary["pss_peak"] = max((r.pss_peak for r in self.runs), default=0)
        summary["errors"] = sum(r.errors for r in self.runs)
        cpu_per_op = [r.server_cpu_s / r.ops * 1000 for r in self.runs if r.ops]
        summary["server_cpu_ms_per_op"] = statistics.median(cpu_per_op) if cpu_per_op else 0.0
        client_per_op = [r.client_cpu_s / r.ops * 1000 for r in self.runs if r.ops]
        summary["client_cpu_ms_per_op"] = statistics.median(client_per_op) if client_per_op else 0.0
        return {
            "id": self.id,
            "title": self.title,
            "kind": self.kind,
            "note": self.note,
            "median": summary,
            "runs": [r.as_dict() for r in self.runs],
        }


Progress = Callable[[str], None]
Hook = Callable[[str, Server], Callable[[], None]]  # (workload id, server) -> stop callback


def _no_hook(workload: str, server: Server) -> Callable[[], None]:
    return lambda: None


class Suite:
    """The workloads against one running server.

    ``round(n)`` runs every workload but LIST once, as run n of the repeats, on a fresh
    server; ``listing(repeats)`` fills a bucket once and LISTs it ``repeats`` times. Runs are
    added to ``results`` (workload id -> Workload), which outlives the server.
    """

    def __init__(
        self,
        server: Server,
        sizes: Sizes,
        progress: Progress,
        results: dict[str, Workload],
        hook: Hook = _no_hook,
    ) -> None:
        self.server = server
        self.sizes = sizes
        self.progress = progress
        self.results = results
        self.hook = hook
        self.admin = make_client(server)
        self.clients = Clients(server, 16)
        self.bucket = "bench"
        self.bodies: dict[str, Body] = {}  # key -> what was PUT
        self.round_no = 0
        self._seq = itertools.count()

    def close(self) -> None:
        self.clients.close()
        self.admin.close()

    def _key(self, prefix: str) -> str:
        return f"{prefix}/{next(self._seq):08d}"

    def _workload(self, wid: str, title: str, kind: str, note: str = "") -> Workload:
        workload = self.results.setdefault(wid, Workload(wid, title, kind))
        workload.note = note or workload.note
        return workload

    def _measure(self, workload: Workload, plan: list[list[Op]] | list[List]) -> None:
        stop = self.hook(workload.id, self.server)
        try:
            if workload.kind == "list":
                run = run_lists(self.server, self.admin, plan)  # type: ignore[arg-type]
            else:
                run = run_ops(self.server, self.clients, plan)  # type: ignore[arg-type]
        finally:
            stop()
        workload.runs.append(run)
        shown = (
            f"{run.mb_per_s:8.1f} MB/s"
            if workload.kind == "bytes"
            else f"{run.ops_per_s:8.0f} ops/s"
        )
        err = f"  {run.errors} ERRORS: {run.first_error}" if run.errors else ""
        client = run.client_cpu_s / run.ops * 1000 if run.ops else 0.0
        self.progress(
            f"  {workload.id:<18} run {len(workload.runs)}: {shown}  p50 {run.p50_ms:7.2f} ms  "
            f"p99 {run.p99_ms:7.2f} ms  RSS {run.rss_peak / MiB:5.0f} MiB  "
            f"client {client:.3f} ms/op  others {run.others_cpu:4.0%} CPU{err}"
        )

    # -- the steps, in the order ``round()`` takes them

    def round(self, number: int) -> None:
        self.round_no = number
        self.admin.create_bucket(Bucket=self.bucket)
        time.sleep(0.5)
        self.idle("idle_start", "idle RSS after start")
        small_c1 = self.puts_then_gets(4 * KiB, 1, self.sizes.small_c1, "4k")
        small_c16 = self.puts_then_gets(4 * KiB, 16, self.sizes.small_c16, "4k")
        self.mixed(small_c16)
        delete_keys(self.server, self.admin, self.bucket, [*small_c1, *small_c16])
        for size, clients, count, name in (
            (MiB, 4, self.sizes.mib1, "1m"),
            (64 * MiB, 4, self.sizes.mib64, "64m"),
        ):
            keys = self.puts_then_gets(size, clients, count, name)
            delete_keys(self.server, self.admin, self.bucket, keys)
        keys = self.puts(64 * MiB, 16, self.sizes.mib64_c16, "64m")
        delete_keys(self.server, self.admin, self.bucket, keys)

    def idle(self, wid: str, title: str) -> None:
        workload = self._workload(wid, title, "idle")
        workload.runs.append(idle(self.server, self.sizes.idle_seconds))
        self.progress(f"  {wid:<18} RSS {workload.runs[-1].rss_peak / MiB:.0f} MiB")

    def puts(
        self, size: int, clients: int, count: int, name: str, workers: int | None = None
    ) -> list[str]:
        """One PUT run of ``count`` new objects; returns their keys. With ``workers``, the
        run is one of the scaling workload's (the server runs with that many workers)."""
        payloads = Payloads(size, seed=self.round_no)
        written: list[str] = []
        ops: list[Op] = []
        for _ in range(count):
            key = self._key(f"{name}-c{clients}")
            self.bodies[key] = body = payloads.make()
            written.append(key)
            ops.append(Put(self.bucket, key, body))
        wid, title = _names("put", size, clients, name, workers)
        kind = "ops" if size < MiB else "bytes"
        self._measure(self._workload(wid, title, kind), split(ops, clients))
        return written

    def puts_then_gets(
        self, size: int, clients: int, count: int, name: str, workers: int | None = None
    ) -> list[str]:
        """A PUT run, then a GET run of the same objects in another order (``get_passes``
        times each)."""
        written = self.puts(size, clients, count, name, workers)
        keys = list(written) * self.sizes.get_passes
        random.Random(self.round_no).shuffle(keys)
        plan = split([Get(self.bucket, k, self.bodies[k]) for k in keys], clients)
        wid, title = _names("get", size, clients, name, workers)
        kind = "ops" if size < MiB else "bytes"
        self._measure(self._workload(wid, title, kind), plan)
        return written

    def scaling(self, number: int, workers: int) -> None:
        """Run ``number`` of the scaling workload: 4 KiB PUT, then GET, 16 clients, on a
        server started with ``server.workers = workers`` (Stratum only)."""
        self.round_no = number
        self.admin.create_bucket(Bucket=self.bucket)
        time.sleep(0.5)
        keys = self.puts_then_gets(4 * KiB, 16, self.sizes.small_c16, "4k", workers)
        delete_keys(self.server, self.admin, self.bucket, keys)

    def mixed(self, existing: list[str]) -> None:
        """80 % GETs of existing 4 KiB objects, 20 % PUTs of new ones, 16 clients."""
        payloads = Payloads(4 * KiB, seed=80 + self.round_no)
        rng = random.Random(1000 + self.round_no)
        new: list[str] = []
        ops: list[Op] = []
        for _ in range(self.sizes.mixed):
            if rng.random() < 0.8:
                key = rng.choice(existing)
                ops.append(Get(self.bucket, key, self.bodies[key]))
            else:
                key = self._key("mix")
                self.bodies[key] = body = payloads.make()
                new.append(key)
                ops.append(Put(self.bucket, key, body))
        workload = self._workload("mixed_4k_c16", "4 KiB 80/20 GET/PUT, 16 clients", "ops")
        self._measure(workload, split(ops, 16))
        existing.extend(new)

    def listing(self, repeats: int) -> None:
        """Fill a bucket with up to ``list_keys`` empty objects, then LIST 1,000-key prefixes
        in ``repeats`` runs; then the idle RSS with that bucket kept."""
        bucket = "bench-list"
        self.admin.create_bucket(Bucket=bucket)
        target = self.sizes.list_keys
        deadline = time.monotonic() + self.sizes.list_fill_seconds
        counter = itertools.count()
        taken = [0] * 16
        errors: list[str] = []

        async def put_keys(index: int) -> None:
            conn = self.clients.conns[index]
            while time.monotonic() < deadline:
                i = next(counter)  # keys in order, so every directory but the last is whole
                if i >= target:
                    return
                try:
                    await conn.put(bucket, f"d{i // 1000:04d}/o{i % 1000:04d}", EMPTY)
                except Exception as exc:
                    errors.append(repr(exc))
                taken[index] = max(taken[index], i + 1)

        async def fill_all() -> None:
            await asyncio.gather(*(put_keys(n) for n in range(16)))

        def drive() -> list[ClientStats]:
            self.clients.loop.run_until_complete(fill_all())
            stats = ClientStats(ops=max(taken))
            for error in errors:
                stats.fail(error)
            return [stats]

        run = measured(self.server, drive)
        filled, elapsed = run.ops, run.wall
        rate = filled / elapsed if elapsed else 0.0
        fill = self._workload("list_fill", "fill: PUT of empty objects, 16 clients", "ops")
        fill.runs.append(dataclasses.replace(run, ops_per_s=rate, wall_ops_per_s=rate))
        fill.note = f"{filled:,} keys in {elapsed:.0f} s"
        self.progress(f"  list_fill          {filled:,} keys in {elapsed:.0f} s ({rate:.0f}/s)")
        full_dirs = filled // 1000
        if full_dirs == 0 or errors:
            note = f"fill failed: {errors[0] if errors else 'fewer than 1,000 keys'}"
            self._workload("list_1000", "LIST 1,000 keys (prefix)", "list", note=note)
            self.progress(f"  list_1000          skipped: {note}")
            return

        probe = time.perf_counter()
        List(bucket, "d0000/", 1000)(self.admin)
        probe = time.perf_counter() - probe
        count = max(5, min(self.sizes.lists, int(self.sizes.list_seconds / probe)))

        note = f"bucket of {filled:,} keys, {count} LISTs per run"
        workload = self._workload("list_1000", "LIST 1,000 keys (prefix)", "list", note)
        for repeat in range(repeats):
            rng = random.Random(2000 + repeat)
            dirs = [rng.randrange(full_dirs) for _ in range(count)]
            self._measure(workload, [List(bucket, f"d{d:04d}/", 1000) for d in dirs])
        time.sleep(1)
        self.idle("idle_end", "idle RSS after the LIST runs (the LIST bucket kept)")


def _size(size: int) -> str:
    return f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"


def _names(op: str, size: int, clients: int, name: str, workers: int | None) -> tuple[str, str]:
    """A workload's id and title: ``put_4k_c16``, ``4 KiB PUT, 16 clients``; a scaling run's
    ``scale_put_4k_c16_w2``, ``... (server.workers = 2)``."""
    wid = f"{op}_{name}_c{clients}"
    title = f"{_size(size)} {op.upper()}, {clients} client{'s' if clients > 1 else ''}"
    if workers is None:
        return wid, title
    return f"scale_{wid}_w{workers}", f"{title} (server.workers = {workers})"


def scaling_ids(workers: int) -> list[tuple[str, str]]:
    """The (id, title) of the scaling workload's PUT and GET rows for ``workers``."""
    return [_names(op, 4 * KiB, 16, "4k", workers) for op in ("put", "get")]
