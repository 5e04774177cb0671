"""The workloads, run the same way against every server with boto3.

Every client thread has its own boto3 client (path-style, no retries, checksums only where
S3 requires them, so the client does no work the benchmark does not ask for) and all threads
start together behind a barrier. A request's latency runs from the call to the last byte of
the response body. Every GET body is checked against the MD5 of what was PUT, after the clock
stopped, so the check does not count against the server.

Throughput (ops/s, MB/s) is the sum over threads of what each thread moved divided by the
time it spent inside requests; with one thread that is plain ops / time. ``wall_*`` in the
JSON is the same over the wall clock of the whole run, checks included.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from bench.procstat import RssSampler, machine_busy_seconds
from bench.servers import Server

KiB = 1024
MiB = 1024 * KiB


def make_client(server: Server) -> Any:
    """A client of its own for one thread; ``client.bench_stamps`` times its last request
    from the moment it is sent to the moment its response body is in (before parsing)."""
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
    body: bytes

    def __call__(self, client: Any) -> tuple[int, bytes | None, float | None]:
        client.put_object(Bucket=self.bucket, Key=self.key, Body=self.body)
        return len(self.body), None, None


@dataclass(frozen=True)
class Get:
    bucket: str
    key: str
    md5: bytes

    def __call__(self, client: Any) -> tuple[int, bytes | None, float | None]:
        body = client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
        return len(body), body, None


@dataclass(frozen=True)
class List:
    bucket: str
    prefix: str
    expect: int

    def __call__(self, client: Any) -> tuple[int, bytes | None, float | None]:
        """Its latency is the wire time: botocore's XML parsing of 1,000 entries (tens of ms
        of client CPU, the same for every server) is left out; the run keeps both."""
        page = client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1000)
        if page.get("KeyCount", 0) != self.expect:
            raise AssertionError(f"LIST {self.prefix}: {page.get('KeyCount')} != {self.expect}")
        stamps = client.bench_stamps
        return 0, None, stamps["received"] - stamps["sent"]


Op = Put | Get | List


# ---------------------------------------------------------------------------- running


@dataclass
class ThreadStats:
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
    client_cpu_s: float = 0.0  # this benchmark process (boto3 threads), over the run
    others_cpu: float = 0.0  # share of all cores other processes used during the run
    e2e_p50_ms: float = 0.0  # LIST: including the client's parsing of the response
    e2e_p99_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def run_ops(server: Server, clients: list[Any], plans: list[list[Op]]) -> Run:
    """Run ``plans[i]`` on thread i with ``clients[i]``, all starting together."""
    barrier = threading.Barrier(len(plans) + 1)
    stats = [ThreadStats() for _ in plans]

    def worker(index: int) -> None:
        client, mine, plan = clients[index], stats[index], plans[index]
        barrier.wait()
        for op in plan:
            start = time.perf_counter()
            try:
                nbytes, body, wire = op(client)
            except Exception as exc:  # a failed request is a result, not a crash
                mine.busy += time.perf_counter() - start
                mine.fail(f"{type(op).__name__} {getattr(op, 'key', '')}: {exc!r}")
                continue
            elapsed = time.perf_counter() - start
            mine.busy += elapsed
            mine.latencies.append(elapsed if wire is None else wire)
            mine.e2e.append(elapsed)
            mine.ops += 1
            mine.nbytes += nbytes
            if isinstance(op, Get) and hashlib.md5(body or b"").digest() != op.md5:
                mine.fail(f"GET {op.key}: body differs from what was PUT (md5)")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(plans))]
    for thread in threads:
        thread.start()
    sampler = RssSampler(server.pids).start()
    busy_before, cpu_before = machine_busy_seconds(), time.process_time()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    sampler.stop()
    client_cpu = time.process_time() - cpu_before
    busy = machine_busy_seconds() - busy_before
    others = max(0.0, busy - client_cpu - sampler.cpu) / (wall * (os.cpu_count() or 1))
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
        rss_mean=sampler.mean,
        server_cpu_s=sampler.cpu,
        client_cpu_s=client_cpu,
        others_cpu=others,
        e2e_p50_ms=percentile(e2e, 50) * 1000,
        e2e_p99_ms=percentile(e2e, 99) * 1000,
    )


def idle(server: Server, seconds: float) -> Run:
    """The server with nothing to do: only RSS and CPU are of interest."""
    sampler = RssSampler(server.pids).start()
    time.sleep(seconds)
    sampler.stop()
    return Run(0, 0, seconds, 0, 0, 0, 0, 0, 0, 0, "", sampler.peak, sampler.mean, sampler.cpu)


# ---------------------------------------------------------------------------- payloads


class Payloads:
    """Object bodies of one size, all different, and the MD5 of each.

    Small bodies are random throughout; large ones share one random block and end in 16
    bytes of their own, so making them costs a copy and their MD5 a 16-byte update.
    """

    TAG = 16

    def __init__(self, size: int, seed: int = 8) -> None:
        self.size = size
        self.rng = random.Random(seed)
        self.large = size > 64 * KiB
        if self.large:
            self.base = self.rng.randbytes(size - self.TAG)
            self.base_md5 = hashlib.md5(self.base)

    def make(self) -> tuple[bytes, bytes]:
        if not self.large:
            body = self.rng.randbytes(self.size)
            return body, hashlib.md5(body).digest()
        tag = os.urandom(self.TAG)
        digest = self.base_md5.copy()
        digest.update(tag)
        return self.base + tag, digest.digest()


def split(items: list[Op], threads: int) -> list[list[Op]]:
    """Round-robin ``items`` over ``threads`` plans."""
    return [items[i::threads] for i in range(threads)]


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
        self.clients = [make_client(server) for _ in range(16)]
        self.admin = self.clients[0]
        self.bucket = "bench"
        self.md5s: dict[str, bytes] = {}  # key -> MD5 of the body PUT
        self.round_no = 0
        self._seq = itertools.count()

    def _key(self, prefix: str) -> str:
        return f"{prefix}/{next(self._seq):08d}"

    def _workload(self, wid: str, title: str, kind: str, note: str = "") -> Workload:
        workload = self.results.setdefault(wid, Workload(wid, title, kind))
        workload.note = note or workload.note
        return workload

    def _measure(self, workload: Workload, plan: list[list[Op]]) -> None:
        stop = self.hook(workload.id, self.server)
        try:
            run = run_ops(self.server, self.clients, plan)
        finally:
            stop()
        workload.runs.append(run)
        shown = (
            f"{run.mb_per_s:8.1f} MB/s"
            if workload.kind == "bytes"
            else f"{run.ops_per_s:8.0f} ops/s"
        )
        err = f"  {run.errors} ERRORS: {run.first_error}" if run.errors else ""
        self.progress(
            f"  {workload.id:<18} run {len(workload.runs)}: {shown}  p50 {run.p50_ms:7.2f} ms  "
            f"p99 {run.p99_ms:7.2f} ms  RSS {run.rss_peak / MiB:5.0f} MiB  "
            f"others {run.others_cpu:4.0%} CPU{err}"
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

    def puts(self, size: int, clients: int, count: int, name: str) -> list[str]:
        """One PUT run of ``count`` new objects; returns their keys."""
        payloads = Payloads(size, seed=self.round_no)
        written: list[str] = []
        ops: list[Op] = []
        for _ in range(count):
            body, md5 = payloads.make()
            key = self._key(f"{name}-c{clients}")
            self.md5s[key] = md5
            written.append(key)
            ops.append(Put(self.bucket, key, body))
        title = f"{_size(size)} PUT, {clients} client{'s' if clients > 1 else ''}"
        kind = "ops" if size < MiB else "bytes"
        self._measure(self._workload(f"put_{name}_c{clients}", title, kind), split(ops, clients))
        return written

    def puts_then_gets(self, size: int, clients: int, count: int, name: str) -> list[str]:
        """A PUT run, then a GET run of the same objects in another order."""
        written = self.puts(size, clients, count, name)
        keys = list(written)
        random.Random(self.round_no).shuffle(keys)
        plan = split([Get(self.bucket, k, self.md5s[k]) for k in keys], clients)
        title = f"{_size(size)} GET, {clients} client{'s' if clients > 1 else ''}"
        kind = "ops" if size < MiB else "bytes"
        self._measure(self._workload(f"get_{name}_c{clients}", title, kind), plan)
        return written

    def mixed(self, existing: list[str]) -> None:
        """80 % GETs of existing 4 KiB objects, 20 % PUTs of new ones, 16 clients."""
        payloads = Payloads(4 * KiB, seed=80 + self.round_no)
        rng = random.Random(1000 + self.round_no)
        new: list[str] = []
        ops: list[Op] = []
        for _ in range(self.sizes.mixed):
            if rng.random() < 0.8:
                key = rng.choice(existing)
                ops.append(Get(self.bucket, key, self.md5s[key]))
            else:
                body, _md5 = payloads.make()
                key = self._key("mix")
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

        def fill(index: int) -> None:
            client = self.clients[index]
            while time.monotonic() < deadline:
                i = next(counter)  # keys in order, so every directory but the last is whole
                if i >= target:
                    return
                try:
                    client.put_object(Bucket=bucket, Key=f"d{i // 1000:04d}/o{i % 1000:04d}")
                except Exception as exc:
                    errors.append(repr(exc))
                taken[index] = max(taken[index], i + 1)

        started, cpu, busy = time.perf_counter(), time.process_time(), machine_busy_seconds()
        sampler = RssSampler(self.server.pids).start()
        threads = [threading.Thread(target=fill, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sampler.stop()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        busy = machine_busy_seconds() - busy
        others = max(0.0, busy - cpu - sampler.cpu) / (elapsed * (os.cpu_count() or 1))
        filled = max(taken)
        rate = filled / elapsed if elapsed else 0.0
        fill = self._workload("list_fill", "fill: PUT of empty objects, 16 clients", "ops")
        fill.runs.append(
            Run(filled, 0, elapsed, rate, 0, rate, 0, 0, 0, len(errors),
                errors[0] if errors else "", sampler.peak, sampler.mean, sampler.cpu, cpu,
                min(1.0, others))
        )  # fmt: skip
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
            self._measure(workload, [[List(bucket, f"d{d:04d}/", 1000) for d in dirs]])
        time.sleep(1)
        self.idle("idle_end", "idle RSS after the LIST runs (the LIST bucket kept)")


def _size(size: int) -> str:
    return f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"
