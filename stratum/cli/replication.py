"""``stratum replication status``: per target, what waits, what was sent, the last error.

It asks the server running on the data directory (admin API); the queue's figures come
from a walk of the queue, the others from the primary process since it started.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from stratum.cli.admin import admin_call, server_endpoint
from stratum.config import Config
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
