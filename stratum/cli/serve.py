"""``stratum serve``: run the S3 server until SIGTERM or SIGINT; SIGHUP reloads the config."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from stratum import __version__
from stratum.block.disk import DiskError
from stratum.cli.admin import SERVER_FILE
from stratum.config import Config, ConfigError
from stratum.meta.store import MetaError
from stratum.model.node import Node
from stratum.model.users import ROOT_FILE, load_root_credentials
from stratum.s3.admin import AdminApi
from stratum.s3.context import ApiSettings
from stratum.s3.observe import Observer
from stratum.s3.server import S3Server, make_app

log = logging.getLogger("stratum")


class JsonFormatter(logging.Formatter):
    FIELDS = ("method", "endpoint", "status", "bytes_in", "bytes_out", "duration_ms", "request_id")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in self.FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(config: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.server.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state, without a library."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)


def serve(config: Config, reload: Callable[[], Config] | None = None) -> int:
    """Serve until stopped; ``reload`` reads the configuration again (SIGHUP)."""
    setup_logging(config)
    if config.server.workers != 1:
        # Several processes sharing the port and LMDB come with the performance work; until
        # then say so rather than silently serving with one.
        print("stratum: server.workers other than 1 is not supported yet", file=sys.stderr)
        return 2
    try:
        node = Node.open(config)
    except (DiskError, MetaError, OSError) as exc:
        print(f"stratum: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency, but keep serving
        runner = asyncio.run
    try:
        runner(_serve(node, reload))
    finally:
        node.close()
    return 0


async def _serve(node: Node, reload: Callable[[], Config] | None) -> None:
    config = node.config
    await node.start()
    settings = ApiSettings(
        region=config.server.region,
        domain=config.server.domain,
        access_log=config.server.access_log,
    )
    admin = AdminApi(
        node.maintenance, node.users, config.server.region, node.clock, tiering=node.tiering
    )
    observer = Observer(node.meta, node.tiers, node.maintenance, domain=config.server.domain)
    server = S3Server(
        node.service, node.multipart, node.users, settings, node.clock, admin, observer
    )
    app = make_app(server)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=30)
    await runner.setup()
    host, port = config.server.host, config.server.port
    site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024)
    await site.start()
    observer.serving = True
    bound = _bound_port(site) or port
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    user = node.root.user
    print(
        f"Stratum {__version__} serving S3 at http://{shown}:{bound} "
        f"region {config.server.region} access key {user.access_key}",
        flush=True,
    )
    if node.root.generated:
        print(
            f"  new root secret key (shown once; kept in "
            f"{config.storage.data_dir / ROOT_FILE}): {user.secret_key}",
            flush=True,
        )
    server_file = config.storage.data_dir / SERVER_FILE
    server_file.write_text(json.dumps({"endpoint": f"http://{shown}:{bound}", "pid": os.getpid()}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload_config, node, server, reload)
    sd_notify("READY=1\nSTATUS=serving")
    await stop.wait()
    observer.serving = False  # /health/ready: 503 while requests in flight finish
    sd_notify("STOPPING=1")
    log.info("shutting down: finishing requests in flight")
    await runner.cleanup()
    await node.stop()
    server_file.unlink(missing_ok=True)


# What SIGHUP applies to a running server; any other change is logged as needing a restart.
# (Users added with ``stratum user`` need neither: they are looked up per request.)
LIVE_KEYS = frozenset(
    {
        "server.access_log",
        "server.log_format",
        "server.access_key",
        "server.secret_key",
        "scrub.interval",
        "scrub.rate",
    }
)


def reload_config(node: Node, server: S3Server, load: Callable[[], Config]) -> None:
    """Re-read the configuration and apply what can change live."""
    now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    sd_notify(f"RELOADING=1\nMONOTONIC_USEC={now_us}\nSTATUS=reloading")
    try:
        try:
            new = load()
        except ConfigError as exc:
            log.error("reload refused, the configuration in use is unchanged: %s", exc)
            return
        old = node.config
        before, after = _flat(old), _flat(new)
        changed = sorted(k for k in after if after[k] != before.get(k))
        live = [k for k in changed if k in LIVE_KEYS]
        restart = [k for k in changed if k not in LIVE_KEYS]
        if new.server.log_format != old.server.log_format:
            setup_logging(new)
        server.settings = dataclasses.replace(server.settings, access_log=new.server.access_log)
        if "server.access_key" in changed or "server.secret_key" in changed:
            node.root = load_root_credentials(
                new.storage.data_dir, new.server.access_key, new.server.secret_key
            )
            node.users.root = node.root.user
        node.maintenance.interval = new.scrub.interval
        node.maintenance.rate = new.scrub.rate
        live_server = {k.partition(".")[2] for k in LIVE_KEYS if k.startswith("server.")}
        node.config = dataclasses.replace(
            old,
            server=dataclasses.replace(
                old.server, **{k: getattr(new.server, k) for k in live_server}
            ),
            scrub=new.scrub,
        )
        log.info("configuration reloaded: %s", ", ".join(live) or "nothing to apply")
        if restart:
            log.warning("changed, applied only after a restart: %s", ", ".join(restart))
    finally:
        sd_notify("READY=1\nSTATUS=serving")


def _flat(config: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if dataclasses.is_dataclass(item):
                walk(item, f"{prefix}{f.name}.")
            elif f.name != "source":
                out[prefix + f.name] = item

    walk(config, "")
    return out


def _bound_port(site: web.TCPSite) -> int | None:
    server = site._server  # aiohttp keeps the asyncio server here
    sockets = getattr(server, "sockets", None)
    if not sockets:
        return None
    return int(sockets[0].getsockname()[1])
