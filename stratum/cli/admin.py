"""``stratum scrub`` and ``stratum disk``: maintenance commands.

They talk to a running server through its admin API (``/_stratum/``, signed with the
root keys), which they find through ``<data_dir>/server.json`` written at start-up.
With no server running, ``scrub`` and ``disk list`` open the data directory themselves.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from stratum.config import Config

SERVER_FILE = "server.json"


def server_endpoint(config: Config) -> str | None:
    """The endpoint of the server running on this data directory, if one answers."""
    path = config.storage.data_dir / SERVER_FILE
    try:
        info = json.loads(path.read_text())
        endpoint = str(info["endpoint"])
        urllib.request.urlopen(
            f"{endpoint}/_stratum/ping", timeout=2, context=own_certificate(config)
        ).close()
    except urllib.error.HTTPError:
        return endpoint  # it answered (with an auth error): it is running
    except (OSError, ValueError, KeyError):
        return None
    return endpoint


def own_certificate(config: Config) -> ssl.SSLContext | None:
    """For a server with ``[server] tls_cert``: trust that certificate, and only it (with its
    chain), whatever name the local address it is reached at has."""
    if config.server.tls_cert is None:
        return None
    context = ssl.create_default_context(cafile=str(config.server.tls_cert))
    context.check_hostname = False  # 127.0.0.1 need not be in it; the certificate is pinned
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the server's own, not a CA's
    return context


def admin_call(config: Config, endpoint: str, method: str, path: str, timeout: float) -> Any:
    """A root-signed request to the admin API; returns the decoded JSON."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from stratum.service.users import load_root_credentials

    root = load_root_credentials(
        config.storage.data_dir, config.server.access_key, config.server.secret_key
    ).user
    request = AWSRequest(method=method, url=f"{endpoint}{path}", data=b"")
    S3SigV4Auth(Credentials(root.access_key, root.secret_key), "s3", config.server.region).add_auth(
        request
    )
    prepared = request.prepare()
    http = urllib.request.Request(prepared.url, method=method, headers=dict(prepared.headers))
    with urllib.request.urlopen(http, timeout=timeout, context=own_certificate(config)) as answer:
        return json.loads(answer.read())


def _offline(config: Config, action: str, target: tuple[str | None, str | None]) -> Any:
    """Open the data directory in this process (no server running) and act."""
    from stratum.node import Node

    node = Node.open(config)

    async def run() -> Any:
        await node.service.start()
        try:
            await node.maintenance.probe_disks()
            if action == "status":
                await node.compaction.account()  # what each disk stores and could reclaim
                return node.maintenance.status()
            figures = await node.maintenance.scrub(bucket=target[0], key=target[1])
            return vars(figures)
        finally:
            await node.service.stop()
            for tier in node.tiers.values():
                await tier.close()

    try:
        return asyncio.run(run())
    finally:
        node.close()


def _split_target(target: str | None) -> tuple[str | None, str | None]:
    if not target:
        return None, None
    bucket, _, key = target.partition("/")
    return bucket, key or None


def scrub(config: Config, target: str | None, status_only: bool) -> int:
    bucket, key = _split_target(target)
    endpoint = server_endpoint(config)
    if status_only:
        if endpoint is not None:
            status = admin_call(config, endpoint, "GET", "/_stratum/status", 30)
        else:
            status = _offline(config, "status", (None, None))
        print(json.dumps(status["scrub"], indent=2))
        return 0
    if endpoint is not None:
        query = ""
        if bucket:
            from urllib.parse import urlencode

            query = "?" + urlencode({"bucket": bucket, **({"key": key} if key else {})})
        figures = admin_call(config, endpoint, "POST", f"/_stratum/scrub{query}", 24 * 3600)
    else:
        figures = _offline(config, "scrub", (bucket, key))
    print(
        f"scrubbed {figures['volumes']} volumes ({figures['bytes']} bytes): "
        f"{figures['damaged']} damaged, {figures['repaired']} repaired, "
        f"{figures['unrepaired']} could not be repaired"
    )
    swept = figures.get("cold_sweep") or {}
    if "error" in swept:
        print(f"sweeping the cold bucket failed: {swept['error']}", file=sys.stderr)
    elif swept:
        print(
            f"swept the cold bucket: {swept['listed']} objects, {swept['deleted']} that no "
            f"volume refers to deleted ({swept['deleted_bytes']} bytes), {swept['recent']} "
            f"too recent to judge, {swept['foreign']} not this store's"
        )
    for failure in figures.get("failures", []):
        print(f"  unrepaired: {failure}", file=sys.stderr)
    return 1 if figures["unrepaired"] else 0


def disk_list(config: Config, as_json: bool) -> int:
    endpoint = server_endpoint(config)
    if endpoint is not None:
        status = admin_call(config, endpoint, "GET", "/_stratum/status", 30)
    else:
        status = _offline(config, "status", (None, None))
    disks = status["disks"]
    if as_json:
        print(json.dumps(disks, indent=2))
        return 0
    # USED and FREE are the filesystem's; STORED is what Stratum's live objects take on the
    # disk and RECLAIM what it will give back (freed records compaction has yet to remove),
    # both as of the last accounting ("-" before the first, shortly after a start).
    print(
        f"{'TIER':<5} {'STATE':<12} {'HEALTH':<9} {'USED':>10} {'FREE':>10} {'STORED':>10} "
        f"{'RECLAIM':>10} {'ERR':>4}  PATH"
    )
    for d in disks:
        backing = d.get("dataset") or d.get("backing", "directory")
        print(
            f"{d['tier']:<5} {d['state'].split(':')[0]:<12} {d.get('health', '-'):<9} "
            f"{_human(d['used_bytes']):>10} {_human(d['free_bytes']):>10} "
            f"{_human(d.get('stored_bytes')):>10} {_human(d.get('reclaimable_bytes')):>10} "
            f"{d['errors']:>4}  {d['path']} ({backing})"
        )
    return 0


def disk_replace(config: Config, old: Path, new: Path) -> int:
    """Record that the disk at OLD is replaced by the (empty) directory NEW."""
    from stratum.block.tierstore import DISKS_KEY
    from stratum.meta.store import MetaStore

    old_key, new_path = str(old.absolute()), new.absolute()
    if new_path.exists() and any(new_path.iterdir()):
        print(f"stratum: {new_path} is not empty; a replacement disk must be", file=sys.stderr)
        return 1
    meta = MetaStore(config.storage.data_dir / "meta")
    meta.open()
    try:
        raw = meta.read(lambda tx: tx.get("info", DISKS_KEY))
        known: dict[str, str] = json.loads(raw) if raw else {}
        if old_key not in known:
            print(f"stratum: {old_key} is not a disk of this store", file=sys.stderr)
            return 1
        known[str(new_path)] = known[old_key]
        encoded = json.dumps(known).encode()
        meta.write_sync(lambda tx: tx.put("info", DISKS_KEY, encoded))
    finally:
        meta.close()
    new_path.mkdir(parents=True, exist_ok=True)
    source = config.source
    if source is not None and old_key in source.read_text():
        source.write_text(source.read_text().replace(old_key, str(new_path)))
        print(f"updated {source}: {old_key} -> {new_path}")
    else:
        print(f"now list {new_path} instead of {old} in the configuration")
    print("restart stratum: the new disk takes the old one's place and is rebuilt from parity")
    return 0


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f}{unit}" if unit != "B" else f"{int(value)}B"
        value /= 1024
    return str(n)
