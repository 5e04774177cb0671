"""``python -m bench.access``: what a bucket policy costs a GET.

    python -m bench.access [--quick] [--rounds N] [--gets N] [--work-dir DIR]

One row, Stratum alone (4+2 over six hot disk directories, as ``python -m bench``): 4 KiB
GETs from 16 clients of 256 objects, from a bucket without a policy and from one whose policy
has 20 statements, the runs interleaved (plain, policy, plain, ...) so that whatever else the
machine does falls on both alike; the medians of ``--rounds`` runs and their ratio. The
target: within 10 %.

The policy is the costly kind for a request: every statement names everyone (``"*"``) and
the request's action, so each must be looked at to its resource, half of them with
conditions as well, and none matches, so no early answer cuts the walk short (the owner's
GET is checked for a deny against all 20).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bench.loadgen import Payloads
from bench.servers import start_stratum
from bench.versioning import medians
from bench.workloads import Clients, Get, Put, Run, make_client, measured, split

KiB = 1024
OBJECTS = 256


def policy(bucket: str, statements: int = 20) -> str:
    """``statements`` statements that all have to be evaluated and none of which applies."""
    out: list[dict[str, Any]] = []
    for n in range(statements):
        statement: dict[str, Any] = {
            "Sid": f"s{n}",
            "Effect": "Deny" if n % 2 else "Allow",
            "Principal": "*",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:List*"],
            "Resource": [f"arn:aws:s3:::{bucket}/area-{n}/*", f"arn:aws:s3:::{bucket}/x{n}*y"],
        }
        if n % 2:
            statement["Condition"] = {
                "IpAddress": {"aws:SourceIp": "198.51.100.0/24"},
                "StringLike": {"aws:UserAgent": f"*robot-{n}*"},
            }
        out.append(statement)
    return json.dumps({"Version": "2012-10-17", "Statement": out})


def get_rows(server: Any, clients: Clients, admin: Any, rounds: int, gets: int) -> dict[str, Any]:
    payloads = Payloads(4 * KiB, seed=1)
    bodies = [payloads.make() for _ in range(OBJECTS)]
    for bucket in ("plain", "policy"):
        admin.create_bucket(Bucket=bucket)
        puts = [Put(bucket, f"obj/{i:04d}", body) for i, body in enumerate(bodies)]
        clients.run(split(puts, 16))  # type: ignore[arg-type]
    admin.put_bucket_policy(Bucket="policy", Policy=policy("policy"))
    runs: dict[str, list[Run]] = {}
    for round_no in range(rounds):
        for bucket in ("plain", "policy"):
            ops = [Get(bucket, f"obj/{i % OBJECTS:04d}", bodies[i % OBJECTS]) for i in range(gets)]
            run = measured(server, lambda ops=ops: clients.run(split(ops, 16)))  # type: ignore[arg-type,misc]
            runs.setdefault(bucket, []).append(run)
            print(
                f"  round {round_no}: {bucket:6} {run.ops_per_s:7.0f} ops/s"
                f"  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms"
                f"  errors {run.errors}  others {run.others_cpu:4.0%} CPU",
                flush=True,
            )
    return {name: medians(found) for name, found in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.access", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved GET rounds (5)")
    parser.add_argument("--gets", type=int, default=6400, help="GETs per run (6400)")
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.gets = 1, 800
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        server = start_stratum(Path(tmp))
        clients = Clients(server, 16)
        admin = make_client(server)
        try:
            print("GET, 4 KiB, 16 clients: no policy vs a 20-statement policy", flush=True)
            rows = get_rows(server, clients, admin, args.rounds, args.gets)
        finally:
            clients.close()
            admin.close()
            server.stop()
    plain, policed = rows["plain"], rows["policy"]
    ratio = policed["ops_per_s"] / plain["ops_per_s"] if plain["ops_per_s"] else 0.0
    print()
    print(
        f"4 KiB GET, 16 clients: no policy {plain['ops_per_s']:.0f} ops/s "
        f"(p50 {plain['p50_ms']:.2f} ms, {plain['server_cpu_ms_per_op']:.3f} ms CPU/op), "
        f"20-statement policy {policed['ops_per_s']:.0f} ops/s (p50 {policed['p50_ms']:.2f} ms, "
        f"{policed['server_cpu_ms_per_op']:.3f} ms CPU/op): {ratio:.1%}, errors "
        f"{plain['errors'] + policed['errors']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
