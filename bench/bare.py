"""``python -m bench.bare``: Stratum's small PUTs against the limit the stack itself sets.

    python -m bench.bare [--quick] [--rounds N] [--puts N] [--work-dir DIR]

Issue 22 takes the goal for small PUTs from a limit rather than from a peer: at 16 clients,
at least 50 % of the PUT rate of a *bare* aiohttp server on uvloop (no authentication, no
storage: it reads each body and answers 200), driven by the same client in the same run,
new keys and overwrites alike.

The bare server runs as many processes as Stratum does by default (one per core, sharing
one listening socket), so the two differ only in what a request costs, not in how many
cores may serve it. The client is ``bench.loadgen`` (SigV4 with the payload's SHA-256 signed,
keep-alive connections, 16 clients, 4 KiB bodies); Stratum runs as ``python -m bench`` runs
it (4+2 over six hot disk directories, every PUT fsynced before it is answered). Runs are
interleaved (Stratum, bare, Stratum, ...), each server started once; the table shows the
medians of ``--rounds`` runs and Stratum's share of the bare rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import Payloads
from bench.procstat import process_tree
from bench.servers import Server, StartError, _spawn, _tail, start_stratum
from bench.versioning import medians
from bench.workloads import Clients, Put, Run, make_client, measured, split

KiB = 1024
BUCKET = "bare-bench"


# -- the bare server --------------------------------------------------------------------------


def _bare_app() -> Any:
    from aiohttp import web

    async def put(request: web.Request) -> web.StreamResponse:
        async for _chunk in request.content.iter_any():  # read, as a server must, and drop
            pass
        return web.Response(headers={"ETag": '"00000000000000000000000000000000"'})

    async def other(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response()

    app = web.Application(client_max_size=1 << 30)
    app.router.add_put("/{path:.*}", put)
    app.router.add_route("*", "/{path:.*}", other)
    return app


def serve_bare(processes: int) -> None:
    """Listen on 127.0.0.1:0, print the address, serve with ``processes`` processes."""
    import uvloop
    from aiohttp import web

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    print(f"bare server at http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    for _ in range(processes - 1):
        if os.fork() == 0:
            break

    async def run() -> None:
        runner = web.AppRunner(_bare_app(), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock, backlog=1024).start()
        await asyncio.Event().wait()

    uvloop.run(run())


def _end_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # its own session (bench.servers._spawn)


def start_bare(workdir: Path, processes: int) -> Server:
    log = workdir / "bare.log"
    cmd = [sys.executable, "-m", "bench.bare", "--serve", str(processes)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    process = _spawn(cmd, log, env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "bare server at " in text:
            endpoint = text.split("bare server at ", 1)[1].split()[0]
            time.sleep(0.5)  # the forked processes reach their accept loop
            return Server(
                name="bare aiohttp",
                endpoint=endpoint,
                access_key="bare",
                secret_key="bare",
                version="",
                setup=f"aiohttp on uvloop, {processes} processes, no auth, no storage",
                processes=[process],
                on_stop=functools.partial(_end_group, process.pid),  # the forks too
            )
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise StartError(f"the bare server did not start\n{_tail(log)}")


# -- the comparison ---------------------------------------------------------------------------


def _puts(server: Server, clients: Clients, keys: list[str], seed: int) -> Run:
    payloads = Payloads(4 * KiB, seed=seed)
    ops = [Put(BUCKET, key, payloads.make()) for key in keys]
    return measured(server, lambda: clients.run(split(ops, 16)))  # type: ignore[arg-type]


def _row(found: list[Run]) -> dict[str, Any]:
    return {**medians(found), "others_cpu": statistics.median(r.others_cpu for r in found)}


def compare(work: Path, rounds: int, puts: int) -> dict[str, dict[str, Any]]:
    stratum = start_stratum(work / "stratum")
    processes = len(process_tree(stratum.pids()))  # the primary and its workers
    bare = start_bare(work, processes)
    servers = {"Stratum": stratum, "bare": bare}
    clients = {name: Clients(server, 16) for name, server in servers.items()}
    runs: dict[str, list[Run]] = {}
    try:
        admin = make_client(stratum)
        admin.create_bucket(Bucket=BUCKET)
        admin.close()
        n = 0
        for round_no in range(rounds):
            for shape in ("new", "overwrite"):
                if shape == "new":
                    keys = [f"n/{n + i:08d}" for i in range(puts)]
                    n += puts
                else:
                    keys = [f"o/{i % 64:02d}" for i in range(puts)]
                for name, server in servers.items():
                    run = _puts(server, clients[name], keys, seed=round_no)
                    runs.setdefault(f"{shape} {name}", []).append(run)
                    print(
                        f"  round {round_no}: {shape:9} {name:8} {run.ops_per_s:7.0f} PUT/s"
                        f"  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms"
                        f"  errors {run.errors}  others {run.others_cpu:4.0%} CPU",
                        flush=True,
                    )
    finally:
        for found in clients.values():
            found.close()
        bare.stop()
        stratum.stop()
    return {name: _row(found) for name, found in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--puts", type=int, default=3200, help="PUTs per run (3200)")
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the bare server itself
    args = parser.parse_args(argv)
    if args.serve:
        serve_bare(args.serve)
        return 0
    if args.quick:
        args.rounds, args.puts = 1, 400
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        rows = compare(Path(tmp), args.rounds, args.puts)
    print()
    print("| 4 KiB PUT, 16 clients | Stratum | bare aiohttp | Stratum / bare |")
    print("|---|---:|---:|---:|")
    for shape in ("new", "overwrite"):
        ours, bare = rows[f"{shape} Stratum"], rows[f"{shape} bare"]
        share = ours["ops_per_s"] / bare["ops_per_s"] if bare["ops_per_s"] else 0.0
        print(
            f"| {shape} keys | {ours['ops_per_s']:,.0f} PUT/s (p99 {ours['p99_ms']:.0f} ms, "
            f"{ours['server_cpu_ms_per_op']:.2f} ms CPU) | {bare['ops_per_s']:,.0f} PUT/s "
            f"({bare['server_cpu_ms_per_op']:.2f} ms CPU) | {share:.0%} |"
        )
    errors = sum(row["errors"] for row in rows.values())
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
