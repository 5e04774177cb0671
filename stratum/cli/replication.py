"""``stratum replication status``: per target, what waits, what was sent, the last error;
``stratum config check FILE --targets``: whether each target can be reached.

``status`` asks the server running on the data directory (admin API); the queue's figures
come from a walk of the queue, the others from the primary process since it started.
``check --targets`` needs no server: it signs a ListBuckets with each target's keys, and asks
for the versioning of each target bucket the configuration names (a bucket listed as ``*``
is not known in advance: not checked).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from stratum.cli.admin import admin_call, server_endpoint
from stratum.config import Config, ReplicationTarget, replication_credentials

if TYPE_CHECKING:
    from stratum.replication.client import TargetClient
from stratum.util.units import format_size


def run(args: argparse.Namespace, config: Config) -> int:
    if not config.replication:
        print("stratum: no [replication.<name>] targets are configured", file=sys.stderr)
        return 1
    endpoint = server_endpoint(config)
    if endpoint is None:
        print("stratum: no server is running on this data directory", file=sys.stderr)
        return 1
    targets = admin_call(config, endpoint, "GET", "/_stratum/replication/status", 60)
    if args.json:
        print(json.dumps(targets, indent=2))
        return 0
    for target in targets:
        print(render(target))
    return 0


def render(t: dict[str, Any]) -> str:
    lines = [f"{t['target']}  {t['endpoint']}"]
    oldest = f"{t['oldest_pending_age']:.1f}s" if t["queued"] else "-"
    lines.append(
        f"  queued: {t['queued']} versions, {format_size(t['queued_bytes'])};"
        f" oldest pending {oldest}"
    )
    if "versions_sent" in t:
        lag = "-" if t["lag_p50"] is None else f"{t['lag_p50']:.3f}s / {t['lag_p99']:.3f}s"
        lines.append(
            f"  sent since start: {t['versions_sent']} versions,"
            f" {format_size(t['bytes_sent'])}; failures {t['failures']}; lag p50/p99 {lag}"
        )
    lines.append(f"  last error: {t['last_error'] or '-'}")
    comparison = t.get("last_comparison")
    if comparison:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(comparison["at"]))
        lines.append(
            f"  last full comparison: {when}, {comparison['compared']} versions compared,"
            f" {comparison['resent']} sent again"
        )
    else:
        lines.append("  last full comparison: none yet")
    return "\n".join(lines)


def check_targets(config: Config) -> int:
    """Reach every target; print one line per check; 1 if any failed."""
    if not config.replication:
        print("no [replication.<name>] targets")
        return 0
    problems = asyncio.run(_check_all(config))
    return 1 if problems else 0


async def _check_all(config: Config) -> int:
    from stratum.replication.client import PushError, TargetClient

    problems = 0
    for target in config.replication:
        client = TargetClient(target, replication_credentials(config, target.name))
        await client.start()
        try:
            for what, url in _checks(target, client):
                try:
                    answer = await client.request("GET", url)
                except PushError as exc:
                    problems += 1
                    print(f"{target.name}: {what}: FAILED: {exc}")
                    continue
                status = "" if "versioning" not in url else _status(answer.body)
                if status and status != "Enabled":
                    problems += 1
                    print(f"{target.name}: {what}: versioning is {status}, not Enabled")
                else:
                    print(f"{target.name}: {what}: OK")
        finally:
            await client.close()
    return problems


def _checks(target: ReplicationTarget, client: TargetClient) -> list[tuple[str, str]]:
    out = [("endpoint and keys", target.endpoint.rstrip("/") + "/")]
    for bucket in target.buckets:
        if bucket != "*":
            name = target.target_bucket(bucket)
            out.append((f"bucket {name}", client.url(name, query="versioning")))
    return out


def _status(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    start = text.find("<Status>")
    if start < 0:
        return "never enabled"
    return text[start + len("<Status>") : text.find("</Status>", start)]
