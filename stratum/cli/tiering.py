"""``stratum explain`` and ``stratum tier log|classes|run|pin|simulate``.

With a server running on the data directory they ask it (admin API); ``simulate``
needs no server: it replays a trace through the same policy code on a simulated clock.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any
from urllib.parse import urlencode

from stratum.cli.admin import admin_call, server_endpoint
from stratum.config import Config


def run(args: argparse.Namespace, config: Config) -> int:
    if args.command == "tier" and args.tier_command == "simulate":
        return simulate(args, config)
    endpoint = server_endpoint(config)
    if endpoint is None:
        print("stratum: no server is running on this data directory", file=sys.stderr)
        return 1
    if args.command == "explain":
        bucket, _, key = args.target.partition("/")
        query = urlencode({"bucket": bucket, "key": key, "version": args.version_id or ""})
        answer = admin_call(config, endpoint, "GET", f"/_stratum/explain?{query}", 30)
        if "error" in answer:
            print(f"stratum: {answer['error']}", file=sys.stderr)
            return 1
        print(render_explanation(answer))
        return 0
    if args.tier_command == "log":
        params = {"limit": str(args.limit)}
        params.update({k: v for k, v in (("bucket", args.bucket), ("key", args.key)) if v})
        records = admin_call(config, endpoint, "GET", f"/_stratum/tier/log?{urlencode(params)}", 30)
        if args.json:
            print(json.dumps(records, indent=2))
        else:
            for r in records:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["at"]))
                print(
                    f"{when}  {r['bucket']}/{r['key']}  {r['from']} -> {r['to']}  "
                    f"{r['rule']}  {r['outcome']}"
                )
        return 0
    if args.tier_command == "classes":
        query = urlencode({"limit": str(args.limit)})
        answer = admin_call(config, endpoint, "GET", f"/_stratum/tier/classes?{query}", 30)
        print(json.dumps(answer, indent=2) if args.json else render_classes(answer))
        return 0
    if args.tier_command == "run":
        report = admin_call(config, endpoint, "POST", "/_stratum/tier/run", 24 * 3600)
        print(f"moved {report['moved']} of {report['decided']} ({report['bytes_moved']} bytes)")
        return 1 if report["failed"] else 0
    tier = "" if args.tier == "auto" else args.tier
    query = urlencode({"bucket": args.bucket, "tier": tier})
    admin_call(config, endpoint, "PUT", f"/_stratum/tier/pin?{query}", 30)
    print(f"{args.bucket}: pinned to {tier}" if tier else f"{args.bucket}: automatic")
    return 0


def render_explanation(e: dict[str, Any]) -> str:
    s = e["signals"]
    lines = [
        f"{e['bucket']}/{e['key']}",
        f"  tier        {e['tier']} ({e['storage_class']}), {e['location']['layout']}",
        f"  size        {e['size']} bytes",
        *_version_lines(e.get("version")),
        f"  signals     last read {_ago(s['idle_seconds'])} ago, {s['access_count']} reads, "
        f"{s['access_rate_per_day']}/day, {s['reads_in_window']} in the promotion window",
    ]
    placed = e["placed_by"]
    inputs = placed.get("inputs")
    lines.append(f"  placed by   {placed['rule']}" + (f" with {inputs}" if inputs else ""))
    if e.get("pin"):
        by = f" by {e['pinned_by']}" if e.get("pinned_by") else ""
        lines.append(f"  pinned to   {e['pin']}{by}")
    if e.get("pending"):
        p = e["pending"]
        lines.append(f"  due now     -> {p['target']} ({p['rule']}) at the next pass")
    lines += _learned_lines(e.get("learned"))
    nxt = e.get("next_move")
    if nxt:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(nxt["at"])) if nxt["at"] else "-"
        lines.append(f"  next move   -> {nxt['to']} by {nxt['rule']}, {when} if not read")
    return "\n".join(lines)


def _learned_lines(learned: dict[str, Any] | None) -> list[str]:
    """The learned policy's view, when it is the policy (the admin API's answer always has
    it: what the learner would decide under the rules too)."""
    if not learned or learned["policy"] != "learned":
        return []
    gaps = learned["gaps"]
    ratio = gaps.get("reread_ratio")
    median = gaps.get("median_gap_below")
    lines = [
        f"  class       {gaps['class']} (policy {learned['policy']})",
        f"  gaps        evidence {gaps['evidence']}, {gaps['evidence_beyond_idle']} beyond this"
        f" idle time (needs {gaps.get('min_evidence', '-')})"
        + (f", re-read {100 * ratio:.0f}%" if ratio is not None else "")
        + (f", median gap < {_ago(median)}" if median else ""),
    ]
    shares = gaps.get("gap_shares")
    if shares:
        lines.append("  gap shares  " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items()))
    costs = learned.get("expected_costs")
    if costs:
        lines.append("  exp. cost   " + ", ".join(f"{t} {c:.3g}" for t, c in costs.items()))
    lines.append(f"  learned     {learned['decision']}")
    return lines


def render_classes(answer: dict[str, Any]) -> str:
    """One line per class: evidence (decayed count of gaps seen), the share of them that were
    re-reads within the horizon, the median re-read gap, when last updated."""
    lines = [
        f"policy {answer['policy']}: {answer['count']} classes"
        + (
            f" (the {len(answer['classes'])} most recently updated)"
            if len(answer["classes"]) < answer["count"]
            else ""
        ),
        f"{'evidence':>9} {'reread':>7} {'median gap':>11}  {'updated (UTC)':16}  class",
    ]
    for c in answer["classes"]:
        ratio = "-" if c["reread_ratio"] is None else f"{100 * c['reread_ratio']:.0f}%"
        median = "-" if c["median_gap_below"] is None else "< " + _ago(c["median_gap_below"])
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(c["updated"]))
        lines.append(f"{c['evidence']:>9.1f} {ratio:>7} {median:>11}  {when:16}  {c['class']}")
    prefetch = answer.get("prefetch")
    if prefetch and prefetch["promoted"]:
        lines += [
            "",
            f"promoted ahead of reads since start: {prefetch['promoted']},"
            f" read {prefetch['used']}, expired unread {prefetch['unused']}",
            f"{'promoted':>9} {'read':>7}  promoting  scope",
        ]
        for scope in prefetch["scopes"]:
            state = "yes" if scope["promoting"] else "no"
            lines.append(
                f"{scope['promoted']:>9.1f} {scope['used']:>7.1f}  {state:9}  {scope['scope']}"
            )
    return "\n".join(lines)


def _version_lines(version: dict[str, Any] | None) -> list[str]:
    if not version or (version["id"] == "null" and version["current"]):
        return []
    if version["current"]:
        return [f"  version     {version['id']} (current)"]
    since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(version["noncurrent_since"]))
    line = f"  version     {version['id']}, noncurrent since {since}"
    if version["never_read"]:
        line += ", never read: an old version kept for recovery, a strong signal to move it down"
    return [line]


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def simulate(args: argparse.Namespace, config: Config) -> int:
    """Every policy over the trace, priced with the configuration's [prices]; the offline
    bound needs the trace's future, so the file is read once more for it."""
    from stratum.tiering.learned import Learner
    from stratum.tiering.offline import OfflineOptimalPolicy
    from stratum.tiering.placements import PlacementLog
    from stratum.tiering.policy import LearnedPolicy, SimulatedStratumPolicy
    from stratum.tiering.pricing import Prices
    from stratum.tiering.simulation_report import compare_text
    from stratum.tiering.simulator import AwsIntelligentTieringPolicy, StaticPolicy, simulation_end
    from stratum.tiering.simulator import simulate as replay
    from stratum.tiering.traces import TraceError, read_trace

    prices = Prices.from_config(config.prices)
    try:
        end = simulation_end(read_trace(args.trace))
    except (OSError, TraceError) as exc:
        print(f"stratum: {exc}", file=sys.stderr)
        return 1
    tiers = {"hot", "warm", "cold"}
    policies: list[Any] = [
        SimulatedStratumPolicy(config.tiering, tiers),
        LearnedPolicy(
            Learner(prices),
            SimulatedStratumPolicy(config.tiering, tiers),
            config.tiering.cold_min_size,
        ),
        AwsIntelligentTieringPolicy(),
        StaticPolicy("hot"),
        OfflineOptimalPolicy.from_trace(read_trace(args.trace), prices, 0.0, end),
    ]
    with contextlib.ExitStack() as stack:
        log = None
        if args.placements is not None:
            log = PlacementLog(stack.enter_context(open(args.placements, "w", encoding="utf-8")))
        reports = [
            replay(read_trace(args.trace), policy, prices, end=end, placements=log)
            for policy in policies
        ]
    if args.json:
        print(json.dumps([json.loads(r.to_json()) for r in reports], indent=2))
    else:
        print(reports[0].to_text())
        print()
        print(compare_text(reports, bound=reports[-1]))
    return 0
