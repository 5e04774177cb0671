"""Two Stratum sites on loopback, each replicating every bucket to the other.

Each site's address must be in the other's configuration before either starts, so the ports
are chosen first (bound to port 0 and released) rather than by the servers themselves.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
