"""Large objects through a real server: a 1 GiB multipart upload and download (MB/s) and a
5 GiB single PUT, with the server's peak RSS sampled throughout (issue 4's flat-memory promise).

    .venv/bin/python -m bench.large_objects [--single-gib 5] [--multipart-gib 1]

Bodies are generated on the fly (never held whole in the client either) and verified by MD5.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig

MiB = 1 << 20
KEY, SECRET = "BENCHLARGEKEY", "bench-large-secret-0001"


class Pattern(io.RawIOBase):
    """A readable stream of ``size`` pseudo-random bytes (a 1 MiB block, varied per MiB)."""

    def __init__(self, size: int) -> None:
        self.size, self.pos = size, 0
        self.block = random.Random(size).randbytes(MiB)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buf: Any) -> int:
        want = min(len(buf), self.size - self.pos)
        done = 0
        view = memoryview(buf)
        while done < want:  # fill the whole buffer: clients take a short read as the end
            offset = self.pos % MiB
            chunk = self.block[offset : offset + want - done]
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
            self.pos += len(chunk)
        return done


def rss_sampler(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        try:
            text = Path(f"/proc/{pid}/status").read_text()
            kib = int(re.search(r"VmRSS:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
            peak[0] = max(peak[0], kib * 1024)
        except (OSError, AttributeError):
            pass
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--single-gib", type=float, default=5.0)
    parser.add_argument("--multipart-gib", type=float, default=1.0)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="stratum-large-"))
    env = dict(os.environ, STRATUM_ACCESS_KEY=KEY, STRATUM_SECRET_KEY=SECRET)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stratum",
            "serve",
            "--data-dir",
            str(data),
            "--listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    endpoint = re.search(r"serving S3 at (\S+)", proc.stdout.readline()).group(1)  # type: ignore[union-attr]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=BotoConfig(s3={"addressing_style": "path"}),
    )
    s3.create_bucket(Bucket="large")
    stop, peak = threading.Event(), [0]
    threading.Thread(target=rss_sampler, args=(proc.pid, stop, peak), daemon=True).start()
    time.sleep(0.5)
    idle = peak[0]
    rows = []
    try:
        size = int(args.multipart_gib * 1024 * MiB)
        cfg = TransferConfig(
            multipart_threshold=8 * MiB, multipart_chunksize=16 * MiB, max_concurrency=4
        )
        peak[0] = 0
        t = time.perf_counter()
        s3.upload_fileobj(Pattern(size), "large", "mp", Config=cfg)
        up = time.perf_counter() - t
        rows.append(("multipart upload", size, up, peak[0]))
        peak[0] = 0
        md5 = hashlib.md5()
        t = time.perf_counter()
        body = s3.get_object(Bucket="large", Key="mp")["Body"]
        for chunk in iter(lambda: body.read(4 * MiB), b""):
            md5.update(chunk)
        down = time.perf_counter() - t
        want = hashlib.md5()
        src = Pattern(size)
        for chunk in iter(lambda: src.read(4 * MiB), b""):
            want.update(chunk)
        assert md5.digest() == want.digest(), "downloaded bytes differ"
        rows.append(("download", size, down, peak[0]))
        size = int(args.single_gib * 1024 * MiB)
        peak[0] = 0
        t = time.perf_counter()
        s3.put_object(Bucket="large", Key="single", Body=Pattern(size), ContentLength=size)
        rows.append((f"single PUT {args.single_gib:g} GiB", size, time.perf_counter() - t, peak[0]))
        head = s3.head_object(Bucket="large", Key="single")
        assert head["ContentLength"] == size
    finally:
        stop.set()
        proc.terminate()
        proc.wait(30)
    print(f"idle RSS {idle / MiB:.0f} MiB")
    print("| operation | size | MB/s | server peak RSS |")
    print("|---|---:|---:|---:|")
    for name, n, secs, rss in rows:
        print(f"| {name} | {n / MiB:,.0f} MiB | {n / secs / 1e6:,.0f} | {rss / MiB:,.0f} MiB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
