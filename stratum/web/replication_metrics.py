"""Replication's metrics, per target: lag, queue depth, bytes and versions sent, failures.

Built from :meth:`stratum.replication.replicator.Replicator.status` (what the primary's
pushers counted since it started, and a walk of each target's queue).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stratum.web.prometheus import Family


def replication_families(status: Sequence[Mapping[str, Any]]) -> list[Family]:
    lag = Family(
        "stratum_replication_lag_seconds",
        "gauge",
        "Age of the oldest version still waiting to reach the target (0: none waits).",
    )
    depth = Family(
        "stratum_replication_queue_versions", "gauge", "Versions waiting for the target."
    )
    depth_bytes = Family(
        "stratum_replication_queue_bytes", "gauge", "Bytes of the versions waiting."
    )
    sent = Family(
        "stratum_replication_sent_versions_total", "counter", "Versions the target received."
    )
    sent_bytes = Family(
        "stratum_replication_sent_bytes_total", "counter", "Bytes sent to the target."
    )
    failures = Family(
        "stratum_replication_failures_total", "counter", "Pushes to the target that failed."
    )
    for target in status:
        name = str(target["target"])
        lag.add(float(target["oldest_pending_age"]), target=name)
        depth.add(float(target["queued"]), target=name)
        depth_bytes.add(float(target["queued_bytes"]), target=name)
        sent.add(float(target.get("versions_sent", 0)), target=name)
        sent_bytes.add(float(target.get("bytes_sent", 0)), target=name)
        failures.add(float(target.get("failures", 0)), target=name)
    return [lag, depth, depth_bytes, sent, sent_bytes, failures]
