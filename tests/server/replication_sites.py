"""Two Stratum sites on loopback, each replicating every bucket to the other.

Each site's address must be in the other's configuration before either starts, so the ports
are chosen first (bound to port 0 and released) rather than by the servers themselves.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3

from tests.server.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    RunningServer,
    start_server,
    stratum_command,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def site_config(
    root: Path,
    name: str,
    site_id: int,
    port: int,
    targets: dict[str, str],
    buckets: str = '["*"]',
    extra: str = "",
) -> Path:
    """A site's configuration file: its data, its id, and a target per (name, endpoint)."""
    home = root / name
    home.mkdir(parents=True, exist_ok=True)
    creds = home / "target-keys.toml"
    creds.write_text(f'access_key = "{ACCESS_KEY}"\nsecret_key = "{SECRET_KEY}"\n')
    text = (
        f'[server]\nlisten = "127.0.0.1:{port}"\nsite_id = {site_id}\n'
        f'replication_keys = ["{ACCESS_KEY}"]\n\n[storage]\ndata_dir = "{home / "data"}"\n'
        '\n[console]\nlisten = ""\n'  # one machine, many sites: no console port for each
    )
    for target, endpoint in targets.items():
        text += (
            f'\n[replication.{target}]\nbuckets = {buckets}\nendpoint = "{endpoint}"\n'
            f'credentials_file = "{creds}"\n{extra}'
        )
    path = home / "stratum.toml"
    path.write_text(text)
    return path


@dataclass
class Site:
    name: str
    config: Path
    port: int
    server: RunningServer | None = None

    def start(self) -> RunningServer:
        self.server = start_server(
            self.config.parent / "data", "--listen", f"127.0.0.1:{self.port}", config=self.config
        )
        return self.server

    def client(self) -> Any:
        assert self.server is not None
        return self.server.client()


def two_sites(root: Path) -> tuple[Site, Site]:
    port_a, port_b = free_port(), free_port()
    a = Site("a", site_config(root, "a", 1, port_a, {"b": f"http://127.0.0.1:{port_b}"}), port_a)
    b = Site("b", site_config(root, "b", 2, port_b, {"a": f"http://127.0.0.1:{port_a}"}), port_b)
    return a, b


def running_sites(root: Path) -> Iterator[tuple[Site, Site]]:
    """Two sites replicating to each other, started; each must then stop cleanly (exit 0).
    A fixture yields from it."""
    a, b = two_sites(root)
    a.start()
    b.start()
    yield a, b
    for site in (a, b):
        assert site.server is not None
        code = site.server.stop()
        assert code == 0, "".join(site.server.output[-50:])


@contextlib.contextmanager
def moto_server() -> Iterator[tuple[int, Any]]:
    """moto server on loopback, a plain S3 store: its port and a boto3 client of it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        yield (
            port,
            boto3.client(
                "s3",
                endpoint_url=f"http://127.0.0.1:{port}",
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
                region_name="us-east-1",
            ),
        )
    finally:
        moto.stop()


@contextlib.contextmanager
def one_way_source(root: Path, endpoint: str) -> Iterator[Site]:
    """A started site replicating every bucket to the S3 store at ``endpoint`` (target
    "moto"), stopped on the way out."""
    port = free_port()
    source = Site("src", site_config(root, "src", 5, port, {"moto": endpoint}), port)
    source.start()
    try:
        yield source
    finally:
        assert source.server is not None
        source.server.stop()


def versioned_bucket(name: str, *clients: Any) -> None:
    for s3 in clients:
        s3.create_bucket(Bucket=name)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """``check()`` until it returns something true (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # not there yet
            last = exc
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}: last {last!r}")


def version_listing(s3: Any, bucket: str) -> list[tuple[str, str, bool, str, bool]]:
    """(key, version id, is delete marker, etag, is latest) of every version, in order."""
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        entries = [(v, False) for v in page.get("Versions", [])]
        entries += [(m, True) for m in page.get("DeleteMarkers", [])]
        for entry, marker in entries:
            out.append(
                (entry["Key"], entry["VersionId"], marker, entry.get("ETag", ""), entry["IsLatest"])
            )
    return sorted(out)


def converged(s3a: Any, s3b: Any, bucket: str, timeout: float = 90) -> list[Any]:
    """Wait until both sites list the same versions of ``bucket``; return the listing."""
    wait_for(
        lambda: version_listing(s3a, bucket) == version_listing(s3b, bucket),
        timeout=timeout,
        what=f"the sites to converge on {bucket}",
    )
    return version_listing(s3a, bucket)


def replication_status(site: Site) -> str:
    """What ``stratum replication status`` prints for a running site."""
    assert site.server is not None
    server = site.server
    done = subprocess.run(
        [*stratum_command(), "replication", "status", "--config", str(site.config)],
        capture_output=True,
        text=True,
        env=server.env()
        | {"STRATUM_ACCESS_KEY": server.access_key, "STRATUM_SECRET_KEY": server.secret_key},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class RefusingProxy:
    """An HTTP proxy in front of an S3 store that answers the first ``refuse_first`` requests
    whose method and path match with 503 SlowDown (a transient error a target may give) and
    forwards every other request as it came."""

    def __init__(self, upstream_port: int, method: str, path: str, refuse_first: int = 1) -> None:
        self.refused: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the pusher's aiohttp expects

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                assert "chunked" not in self.headers.get("Transfer-Encoding", "")
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.command == method and self.path.split("?")[0] == path:
                    with lock:
                        refuse = len(proxy.refused) < refuse_first
                        if refuse:
                            proxy.refused.append(self.path)
                    if refuse:
                        self._answer(503, {}, b"<Error><Code>SlowDown</Code></Error>")
                        return
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                try:
                    upstream.request(self.command, self.path, body, dict(self.headers.items()))
                    answer = upstream.getresponse()
                    data = answer.read()
                    headers = {
                        k: v
                        for k, v in answer.getheaders()
                        if k.lower() not in ("transfer-encoding", "connection", "content-length")
                    }
                    if self.command == "HEAD":  # no body, but the length of the object's
                        headers["Content-Length"] = answer.getheader("Content-Length", "0")
                    self._answer(answer.status, headers, data)
                finally:
                    upstream.close()

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
