"""``python -m bench.replication``: replication lag, and what replication costs the source.

    python -m bench.replication [--seconds N] [--rate N] [--rounds N] [--work-dir DIR]

Two Stratum servers on loopback (default setup: one process per core, one hot disk
directory each): A replicates bucket ``rep`` to B, and also holds bucket ``plain`` that it
does not replicate; both buckets versioned.

* **Lag under steady load**: ``--rate`` PUTs per second of 1 MiB objects into ``rep`` for
  ``--seconds`` seconds (paced from 8 threads); then, once A's queue is empty, the p50 and
  p99 of the lag of those versions as A's pusher measured it (from the commit that queued a
  version to the end of its push), from ``stratum replication status --json``.
* **PUT throughput with replication on and off**: 1 MiB PUTs from 4 clients as fast as they
  go, into ``rep`` and ``plain`` in turn (interleaved, ``--rounds`` each), MB/s medians.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

ACCESS_KEY, SECRET_KEY = "BENCHREPLICATION0001", "bench-replication-secret-0000000000000001"
MiB = 1 << 20
STATUS = [sys.executable, "-m", "stratum", "replication", "status", "--json"]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    return dict(os.environ, STRATUM_ACCESS_KEY=ACCESS_KEY, STRATUM_SECRET_KEY=SECRET_KEY)


def _start(home: Path, port: int, site: int, target: int | None) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    keys = home / "keys.toml"
    keys.write_text(f'access_key = "{ACCESS_KEY}"\nsecret_key = "{SECRET_KEY}"\n')
    text = (
        f'[server]\nlisten = "127.0.0.1:{port}"\nsite_id = {site}\naccess_log = false\n'
        f'replication_keys = ["{ACCESS_KEY}"]\n[storage]\ndata_dir = "{home / "data"}"\n'
        '[console]\nlisten = ""\n'
    )
    if target is not None:
        text += (
            f'[replication.b]\nbuckets = ["rep"]\nendpoint = "http://127.0.0.1:{target}"\n'
            f'credentials_file = "{keys}"\n'
        )
    (home / "stratum.toml").write_text(text)
    log = (home / "stratum.log").open("wb")
    cmd = [sys.executable, "-m", "stratum", "serve", "--config", str(home / "stratum.toml")]
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.1)
    raise RuntimeError(f"server in {home} did not start")


def _client(port: int) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=BotoConfig(s3={"addressing_style": "path"}, max_pool_connections=16),
    )


def _status(home: Path) -> dict[str, Any]:
    done = subprocess.run(
        [*STATUS, "--config", str(home / "stratum.toml")],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    )
    [target] = json.loads(done.stdout)
    return dict(target)


def steady(s3: Any, home: Path, rate: float, seconds: float) -> dict[str, Any]:
    body = os.urandom(MiB)
    count = int(rate * seconds)
    start = time.monotonic() + 0.5
    late = 0
    lock = threading.Lock()

    def put(i: int) -> None:
        nonlocal late
        due = start + i / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        elif pause < -0.1:
            with lock:
                late += 1
        s3.put_object(Bucket="rep", Key=f"steady/{i:06d}", Body=body)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(count)))
    took = time.monotonic() - start
    deadline = time.monotonic() + 300
    while _status(home)["queued"] and time.monotonic() < deadline:
        time.sleep(0.2)
    status = _status(home)
    return {
        "puts": count,
        "achieved_per_s": count / took,
        "late_puts": late,
        "lag_p50_s": status["lag_p50"],
        "lag_p99_s": status["lag_p99"],
        "failures": status["failures"],
    }


def throughput(s3: Any, bucket: str, count: int, seq: int) -> float:
    body = os.urandom(MiB)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda i: s3.put_object(Bucket=bucket, Key=f"t{seq}/{i:05d}", Body=body),
                range(count),
            )
        )
    return count / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replication")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=200, help="PUTs per throughput run")
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-replication-"))
    port_a, port_b = _port(), _port()
    b = _start(work / "b", port_b, 2, None)
    a = _start(work / "a", port_a, 1, port_b)
    try:
        s3a, s3b = _client(port_a), _client(port_b)
        for s3, names in ((s3a, ("rep", "plain")), (s3b, ("rep",))):
            for name in names:
                s3.create_bucket(Bucket=name)
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        lag = steady(s3a, work / "a", args.rate, args.seconds)
        print(f"steady {args.rate:.0f} PUT/s of 1 MiB for {args.seconds:.0f}s: {lag}", flush=True)
        rates: dict[str, list[float]] = {"rep": [], "plain": []}
        seq = 0
        for _round in range(args.rounds):
            for bucket in ("plain", "rep"):
                seq += 1
                rates[bucket].append(throughput(s3a, bucket, args.count, seq))
                print(f"  {bucket:5} {rates[bucket][-1] * 1.048576:6.1f} MB/s", flush=True)
        on, off = statistics.median(rates["rep"]), statistics.median(rates["plain"])
        print(
            f"1 MiB PUT, 4 clients: replication off {off * 1.048576:.1f} MB/s,"
            f" on {on * 1.048576:.1f} MB/s ({on / off:.2f}x)"
        )
    finally:
        for process in (a, b):
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
