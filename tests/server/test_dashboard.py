"""dashboards/stratum.json against a real Prometheus (Debian's ``prometheus``) scraping a real
server on loopback: every query of every panel returns data.

The server gets the traffic the panels show (uploads, reads, a missing key, a tiering pass
that moves objects), Prometheus scrapes it every second, and each panel's expression is
evaluated through Prometheus's HTTP API with Grafana's variables filled in as Grafana would
(``$instance``: every instance, ``$__rate_interval``: four scrape intervals).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.browser import start_console_server
from tests.server.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    RunningServer,
    start_server,
    stratum_command,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "stratum.json"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
SCRAPE = 1  # seconds


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every target, rows' panels included."""
    out = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            out.extend((panel["title"], t["expr"]) for t in panel.get("targets", []))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return out


def as_grafana_would(expr: str) -> str:
    return expr.replace("$__rate_interval", f"{4 * SCRAPE}s").replace("$instance", ".*")


def test_the_dashboard_is_importable_as_is() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["title"] == "Stratum" and board["uid"] and board["schemaVersion"] >= 36
    assert "__inputs" not in board  # no import-time substitution: the datasource is a variable
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = set()
    for panel in board["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    titles = " ".join(p["title"] for p in board["panels"]).lower()
    for subject in ("requests", "latency", "errors", "tier", "moves", "disk", "scrub", "replica"):
        assert subject in titles, subject


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def offsite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A second site the dashboard's server replicates its bucket to (the replication panels)."""
    base = tmp_path_factory.mktemp("offsite")
    config = base / "stratum.toml"
    config.write_text(
        f'[server]\nsite_id = 2\nreplication_keys = ["{ACCESS_KEY}"]\n\n'
        f'[storage]\ndata_dir = "{base / "data"}"\n\n[console]\nlisten = ""\n'
    )
    srv = start_server(base / "data", config=config)
    s3 = srv.client()
    s3.create_bucket(Bucket="metrics-test")
    s3.put_bucket_versioning(Bucket="metrics-test", VersioningConfiguration={"Status": "Enabled"})
    yield srv
    assert srv.stop() == 0, "".join(srv.output[-40:])


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, offsite: RunningServer
) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("dashboard")
    keys = base / "offsite-keys.toml"
    keys.write_text(f'access_key = "{ACCESS_KEY}"\nsecret_key = "{SECRET_KEY}"\n')
    replicating = (
        "[server]\nsite_id = 1\n\n"
        f'[replication.offsite]\nbuckets = ["metrics-test"]\nendpoint = "{offsite.endpoint}"\n'
        f'credentials_file = "{keys}"\n'
    )
    srv = start_console_server(base, replicating)
    yield srv
    assert srv.stop() == 0, "".join(srv.output[-40:])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, server: RunningServer) -> Iterator[str]:
    if not Path(PROMETHEUS).exists():
        pytest.skip("needs Debian's prometheus (./dev setup installs it)")
    base = tmp_path_factory.mktemp("prometheus")
    target = server.endpoint.removeprefix("http://")
    (base / "prometheus.yml").write_text(
        f"""
global:
  scrape_interval: {SCRAPE}s
  evaluation_interval: {SCRAPE}s
scrape_configs:
  - job_name: stratum
    metrics_path: /metrics
    static_configs:
      - targets: ["{target}"]
"""
    )
    port = free_port()
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={base / 'prometheus.yml'}",
            f"--storage.tsdb.path={base / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(base / "prometheus.log").open("w"),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, (base / "prometheus.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def query(url: str, expr: str) -> list[Any]:
    params = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    result: list[Any] = answer["data"]["result"]
    return result


def traffic(server: RunningServer, rounds: int) -> None:
    s3 = server.client()
    for n in range(rounds):
        s3.put_object(Bucket="metrics-test", Key=f"doc-{n}", Body=os.urandom(200_000))
        s3.get_object(Bucket="metrics-test", Key=f"doc-{n}")["Body"].read()
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket="metrics-test", Key="missing")
        time.sleep(0.25)


def test_every_dashboard_query_returns_data(server: RunningServer, prometheus: str) -> None:
    s3 = server.client()
    s3.create_bucket(Bucket="metrics-test")
    s3.put_bucket_versioning(Bucket="metrics-test", VersioningConfiguration={"Status": "Enabled"})
    traffic(server, 8)
    time.sleep(1.5)  # every object idle past hot_idle_before_warm (1 s): the pass moves all 8
    env = {**os.environ, "STRATUM_ACCESS_KEY": ACCESS_KEY, "STRATUM_SECRET_KEY": SECRET_KEY}
    config = str(server.config)  # type: ignore[attr-defined]
    subprocess.run(
        [*stratum_command(), "tier", "run", "--config", config],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    traffic(server, 12)  # more scrapes: rates over the moves' counter too
    queries = panel_queries()
    assert len(queries) >= 20
    empty = []
    deadline = time.monotonic() + 60
    while True:
        empty = [(t, e) for t, e in queries if not query(prometheus, as_grafana_would(e))]
        if not empty or time.monotonic() > deadline:
            break
        traffic(server, 2)
    assert not empty, "panels whose query returned no data:\n" + "\n".join(
        f"  {title}: {expr}" for title, expr in empty
    )
    moved = query(prometheus, 'sum(stratum_tier_moves_total{outcome="moved"})')
    assert float(moved[0]["value"][1]) >= 8
