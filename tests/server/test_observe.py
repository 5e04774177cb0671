"""Operating a real server: /metrics, /health/*, and SIGHUP reloading the configuration."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.server.conftest import RunningServer, start_server
from tests.unit.test_metrics import Parsed, parse_text, sample

KiB = 1024


def fetch(
    url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def scrape(server: RunningServer) -> Parsed:
    status, headers, body = fetch(f"{server.endpoint}/metrics")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse_text(body.decode())


def scrape_until(server: RunningServer, ready: Callable[[Parsed], bool]) -> Parsed:
    """Scrape until ``ready`` holds: an answer to /metrics is up to a few seconds old, and a
    worker publishes its requests every few seconds."""
    deadline = time.monotonic() + 20
    while not ready(parsed := scrape(server)):
        assert time.monotonic() < deadline, "the metrics never caught up"
        time.sleep(0.5)
    return parsed


def value(parsed: Parsed, name: str, **labels: str) -> float:
    return parsed.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def wait_for(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("observe"))
    yield srv
    assert srv.stop() == 0, "".join(srv.output[-30:])


def test_metrics_move_with_s3_requests(observed: RunningServer) -> None:
    s3 = observed.client()
    s3.create_bucket(Bucket="observed")
    sizes = {"small": 4 * KiB, "large": 300 * KiB, "third": 10}  # large: erasure coded
    for key, size in sizes.items():
        s3.put_object(Bucket="observed", Key=key, Body=os.urandom(size))
    s3.get_object(Bucket="observed", Key="large")["Body"].read()
    with pytest.raises(ClientError):
        s3.head_object(Bucket="observed", Key="missing")

    requests = "stratum_s3_requests_total"
    latency = "stratum_s3_request_duration_seconds"
    # The first scrape of this server counts the volumes now; the other processes' requests
    # show once they published them (within seconds).
    first = scrape_until(
        observed, lambda p: value(p, requests, operation="HeadObject", status="404") == 1
    )
    assert sample(first, requests, operation="CreateBucket", status="200") == 1
    assert sample(first, requests, operation="PutObject", status="200") == 3
    assert sample(first, requests, operation="GetObject", status="200") == 1
    assert sample(first, requests, operation="HeadObject", status="404") == 1
    assert sample(first, f"{latency}_count", operation="PutObject") == 3
    assert sample(first, f"{latency}_bucket", operation="PutObject", le="+Inf") == 3
    assert sample(first, "stratum_s3_received_bytes_total", operation="PutObject") == sum(
        sizes.values()
    )
    assert sample(first, "stratum_s3_sent_bytes_total", operation="GetObject") == 300 * KiB
    assert sample(first, "stratum_tier_objects", tier="hot") == 3
    assert sample(first, "stratum_tier_bytes", tier="hot") == sum(sizes.values())
    assert sample(first, "stratum_ready") == 1
    assert sample(first, "stratum_tier_disks_online", tier="hot") == 1
    assert sample(first, "process_resident_memory_bytes") > 10_000_000
    assert sample(first, "stratum_scrub_running") in (0, 1)
    assert "stratum_disk_state" in first and "stratum_heal_queued" in first

    s3.put_object(Bucket="observed", Key="more", Body=b"x" * 1000)
    s3.list_objects_v2(Bucket="observed")
    second = scrape_until(
        observed, lambda p: value(p, requests, operation="ListObjectsV2", status="200") == 1
    )
    # Scrapes themselves are not S3 requests: only these two moved the counters.
    assert sample(second, requests, operation="PutObject", status="200") == 4
    assert sample(second, requests, operation="ListObjectsV2", status="200") == 1
    assert sample(second, f"{latency}_count", operation="PutObject") == 4
    assert sample(second, f"{latency}_sum", operation="PutObject") > sample(
        first, f"{latency}_sum", operation="PutObject"
    )
    assert (
        sample(second, "stratum_s3_received_bytes_total", operation="PutObject")
        == sum(sizes.values()) + 1000
    )
    assert value(second, "stratum_s3_sent_bytes_total", operation="ListObjectsV2") > 0
    assert sample(second, "process_cpu_seconds_total") >= sample(first, "process_cpu_seconds_total")


def test_health_endpoints(observed: RunningServer) -> None:
    status, headers, body = fetch(f"{observed.endpoint}/health/live")
    assert (status, json.loads(body)) == (200, {"status": "live"})
    assert headers["Content-Type"].startswith("application/json")
    status, _, body = fetch(f"{observed.endpoint}/health/ready")
    assert (status, json.loads(body)) == (200, {"status": "ready"})
    assert fetch(f"{observed.endpoint}/health/ready", "HEAD")[0] == 200
    assert fetch(f"{observed.endpoint}/health/live", "HEAD")[0] == 200
    # Other paths under /health are S3 (an anonymous GetObject of a bucket that is not there).
    status, _, body = fetch(f"{observed.endpoint}/health/other")
    assert status == 404 and b"<Code>NoSuchBucket</Code>" in body


def test_signed_requests_to_these_paths_stay_s3(observed: RunningServer) -> None:
    s3 = observed.client()
    s3.create_bucket(Bucket="metrics")
    s3.create_bucket(Bucket="health")
    try:
        s3.put_object(Bucket="metrics", Key="a.txt", Body=b"metric data")
        s3.put_object(Bucket="health", Key="live", Body=b"an object called live")
        listed = s3.list_objects(Bucket="metrics")  # signed GET /metrics
        assert [o["Key"] for o in listed["Contents"]] == ["a.txt"]
        listed = s3.list_objects_v2(Bucket="metrics")
        assert [o["Key"] for o in listed["Contents"]] == ["a.txt"]
        got = s3.get_object(Bucket="health", Key="live")["Body"].read()
        assert got == b"an object called live"
        # Presigned (query-string signature, SigV2 and SigV4): S3 too.
        for client in (s3, observed.client(signature_version="s3v4")):
            url = client.generate_presigned_url("list_objects", Params={"Bucket": "metrics"})
            status, _, body = fetch(url)
            assert status == 200 and b"<Key>a.txt</Key>" in body, url
            params = {"Bucket": "health", "Key": "live"}
            url = client.generate_presigned_url("get_object", Params=params)
            assert fetch(url)[2] == b"an object called live", url
        # Unsigned: metrics and health, whatever the bucket names.
        status, _, body = fetch(f"{observed.endpoint}/metrics")
        assert status == 200 and b"# TYPE stratum_s3_requests_total counter" in body
        assert json.loads(fetch(f"{observed.endpoint}/health/live")[2]) == {"status": "live"}
        # An unsigned write to these paths is S3 (and refused), never metrics.
        status, _, body = fetch(f"{observed.endpoint}/metrics", "PUT")
        assert status == 403 and b"AccessDenied" in body
    finally:
        s3.delete_object(Bucket="metrics", Key="a.txt")
        s3.delete_object(Bucket="health", Key="live")
        s3.delete_bucket(Bucket="metrics")
        s3.delete_bucket(Bucket="health")


@pytest.mark.slow
def test_ready_follows_the_hot_disks(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data")
    try:
        disk = tmp_path / "data" / "disks" / "hot"
        away = tmp_path / "data" / "hot-away"
        disk.rename(away)

        def ready_status() -> int:
            return fetch(f"{srv.endpoint}/health/ready")[0]

        wait_for(lambda: ready_status() == 503)
        body = fetch(f"{srv.endpoint}/health/ready")[2]
        reason = json.loads(body)
        assert reason["status"] == "not ready"
        assert "hot tier has 0 disk(s) online, writes need 1" in reason["reason"]
        assert fetch(f"{srv.endpoint}/health/live")[0] == 200
        parsed = scrape(srv)
        assert sample(parsed, "stratum_ready") == 0
        assert sample(parsed, "stratum_tier_disks_online", tier="hot") == 0
        offline = [v for k, v in parsed["stratum_disk_state"].items() if ("state", "offline") in k]
        assert offline == [1]

        away.rename(disk)
        wait_for(lambda: ready_status() == 200)
    finally:
        assert srv.stop() == 0, "".join(srv.output[-30:])


def _write_config(path: Path, data_dir: Path, access: str, secret: str, **extra: str) -> None:
    lines = ["[server]", f'access_key = "{access}"', f'secret_key = "{secret}"']
    lines += [f"{k} = {v}" for k, v in extra.items() if not k.startswith("storage_")]
    lines += ["[storage]", f'data_dir = "{data_dir}"']
    lines += [f"{k[8:]} = {v}" for k, v in extra.items() if k.startswith("storage_")]
    path.write_text("\n".join(lines) + "\n")


def _logged(srv: RunningServer, text: str) -> bool:
    return _count(srv, text) > 0


def _count(srv: RunningServer, text: str) -> int:
    return sum(text in line for line in list(srv.output))


def test_sighup_reloads_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "stratum.toml"
    data = tmp_path / "data"
    old_key, old_secret = "RELOADOLDKEY00000001", "reload-old-secret-0000000000000000000001"
    new_key, new_secret = "RELOADNEWKEY00000002", "reload-new-secret-0000000000000000000002"
    _write_config(config, data, old_key, old_secret, access_log="true")
    # Empty environment keys: the keys come from the file.
    srv = start_server(
        data, config=config, env={"STRATUM_ACCESS_KEY": "", "STRATUM_SECRET_KEY": ""}
    )
    try:
        srv.access_key, srv.secret_key = old_key, old_secret
        srv.client().create_bucket(Bucket="reload")
        wait_for(lambda: _logged(srv, "CreateBucket /reload 200"))

        _write_config(
            config,
            data,
            new_key,
            new_secret,
            access_log="false",
            storage_multipart_expiry='"1d"',
        )
        srv.process.send_signal(signal.SIGHUP)
        # Every server process re-reads the file (the primary passes the signal on).
        processes = (
            int(m.group(1)) if (m := re.search(r"\((\d+) processes\)", srv.output[0])) else 1
        )
        wait_for(lambda: _count(srv, "configuration reloaded") == processes)
        line = next(x for x in srv.output if "configuration reloaded" in x)
        assert "server.access_key" in line and "server.access_log" in line
        assert "server.secret_key" in line
        assert _logged(srv, "applied only after a restart: storage.multipart_expiry")
        assert new_secret not in "".join(srv.output)

        # The root user's keys changed without a restart.
        with pytest.raises(ClientError) as refused:
            srv.client().list_buckets()
        assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"
        srv.access_key, srv.secret_key = new_key, new_secret
        names = [b["Name"] for b in srv.client().list_buckets()["Buckets"]]
        assert names == ["reload"]
        # The access log is off now.
        srv.client().head_bucket(Bucket="reload")
        time.sleep(0.5)
        assert not _logged(srv, "HeadBucket")

        # A broken file is refused; the server goes on with what it has.
        config.write_text(config.read_text() + "unknown_key = 1\n")
        srv.process.send_signal(signal.SIGHUP)
        wait_for(lambda: _logged(srv, "reload refused"))
        assert srv.client().list_buckets()["Buckets"]
        srv.client().delete_bucket(Bucket="reload")
    finally:
        assert srv.stop() == 0, "".join(srv.output[-30:])
