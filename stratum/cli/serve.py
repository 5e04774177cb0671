"""``stratum serve``: run the S3 server until SIGTERM or SIGINT; SIGHUP reloads the config."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import json
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from stratum import __version__
from stratum.block.disk import DiskError
from stratum.cli import datadir
from stratum.cli.admin import SERVER_FILE
from stratum.cli.logformat import JsonFormatter, TextFormatter
from stratum.cli.workers import (
    STOP_TIMEOUT,
    Role,
    answer_flush,
    flush_workers,
    signals_while_starting,
    spawn,
    worker_count,
)
from stratum.config import Config, ConfigError
from stratum.console.server import start_console
from stratum.meta.store import MetaError
from stratum.node import RUN_DIR, Node
from stratum.s3.context import ApiSettings
from stratum.s3.server import S3Server
from stratum.service.users import ROOT_FILE, load_root_credentials
from stratum.util import loopwatch, memory
from stratum.util.loglines import BatchingStreamHandler
from stratum.util.periodic import Periodic
from stratum.web.admin import AdminApi
from stratum.web.app import FrontRunner, make_app
from stratum.web.forward import (
    PUBLISH_INTERVAL,
    MetricsPublisher,
    PrimaryForwarder,
    metrics_file,
    read_peer_metrics,
)
from stratum.web.observe import MetricsAccess, Observer
from stratum.web.tls import ServerTls, load_server_tls

log = logging.getLogger("stratum")


def setup_logging(config: Config) -> None:
    handler = BatchingStreamHandler(sys.stderr)
    if config.server.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    for old in root.handlers:
        old.flush()  # lines a batching handler still holds
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
    """Serve until stopped; ``reload`` reads the configuration again (SIGHUP).

    With ``server.workers`` above 1 this forks the worker processes first
    (:mod:`stratum.cli.workers`); every process returns from here with its own exit code.
    """
    setup_logging(config)
    count = worker_count(config.server.workers)
    data_dir = config.storage.data_dir
    try:
        datadir.make_private(data_dir)
        datadir.lock(data_dir)  # held until this process and its workers end
    except datadir.DataDirInUse as exc:
        print(f"stratum: cannot start: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"stratum: cannot use the data directory {data_dir}: {exc}", file=sys.stderr)
        return 1
    try:
        role = spawn(config.server.host, config.server.port, count, data_dir / RUN_DIR)
    except OSError as exc:
        print(f"stratum: cannot listen on {config.server.listen}: {_why(exc)}", file=sys.stderr)
        return 2
    if not role.primary and not role.wait_for_primary():
        return 1  # the primary could not start; it says why
    try:
        node = Node.open(config, worker=not role.primary)
        if role.primary and role.shared:
            node.share()
        elif not role.primary:
            node.join(role.index)
    except (DiskError, MetaError, OSError) as exc:
        print(f"stratum: cannot start: {exc}", file=sys.stderr)
        if role.primary:
            _abandon_workers(role)
        return 1
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency, but keep serving
        runner = asyncio.run
    try:
        code: int = runner(_serve(node, reload, role))
    finally:
        node.close()
    return code


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the address is in use (another server listens there)"
    return exc.strerror or str(exc)


def _abandon_workers(role: Role) -> None:
    """The primary failed before its workers started: closing their pipes ends them."""
    for fd in role.go:
        os.close(fd)
    role.go = []
    for pid in role.children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


async def _serve(node: Node, reload: Callable[[], Config] | None, role: Role) -> int:
    loopwatch.watch_from_env()  # STRATUM_LOOP_WATCHDOG_MS: log event-loop stalls (debugging)
    config = node.config
    await node.start(background=role.primary)
    settings = ApiSettings(
        region=config.server.region,
        domain=config.server.domain,
        access_log=config.server.access_log,
        sigv2=config.server.sigv2,
        body_timeout=config.server.body_timeout,
        replication_keys=frozenset(config.server.replication_keys),
        replication_targets=config.replication,
    )
    observer = Observer(
        node.meta,
        node.tiers,
        node.maintenance,
        domain=config.server.domain,
        access=_metrics_access(config),
        tiering=node.tiering,
    )
    admin: AdminApi | PrimaryForwarder
    forwarder: PrimaryForwarder | None = None
    publishing: Periodic | None = None  # a worker's request metrics, for the primary
    if role.primary:
        replication = node.replicator.status if node.replicator is not None else None
        admin = AdminApi(
            node.maintenance,
            node.users,
            config.server.region,
            node.clock,
            tiering=node.tiering,
            replication=replication,
        )
        observer.replication = replication
        if role.shared:
            _clear_metrics(role.run_dir)

            async def peer_metrics() -> list[dict[str, Any]]:  # as the workers last wrote them
                return await loop.run_in_executor(None, read_peer_metrics, role.run_dir)

            observer.peers = peer_metrics
    else:
        admin = forwarder = PrimaryForwarder(role.private_port, config.server.body_timeout)
        observer.forward = forwarder.handle
        parent = os.getppid()
        node.service.on_pinned = functools.partial(os.kill, parent, signal.SIGUSR1)
    server = S3Server(node.service, node.multipart, node.users, settings, node.clock)
    # With several processes, connections are closed now and then so that they spread.
    spread = REQUESTS_PER_CONNECTION if role.count > 1 else 0
    app = make_app(server, observer, admin, requests_per_connection=spread)
    runner = FrontRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=30,
        keepalive_timeout=config.server.idle_timeout,
    )
    await runner.setup()
    tls = None
    if config.server.tls_cert is not None and config.server.tls_key is not None:
        tls = await load_server_tls(config.server.tls_cert, config.server.tls_key)
    parts = LiveParts(server, observer, tls)
    for index, sock in enumerate(role.sockets):
        # The public socket (first) speaks TLS if configured; the primary's private one, which
        # its workers relay admin and metrics requests to over loopback, stays plain HTTP.
        context = tls.listening if tls is not None and index == 0 else None
        await web.SockSite(runner, sock, backlog=1024, ssl_context=context).start()
    observer.serving = True
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    background: set[asyncio.Task[None]] = set()  # tasks signal handlers start
    exit_code = 0
    server_file = config.storage.data_dir / SERVER_FILE
    # Before anything says "serving": a SIGHUP sent on that word must find its handler.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload_config, node, parts, reload, role)
    if role.primary:
        _announce(node, role, tls is not None)
        endpoint = _endpoint(role, tls is not None)
        server_file.write_text(json.dumps({"endpoint": endpoint, "pid": os.getpid()}))

        def worker_ended(pid: int, status: int) -> None:
            nonlocal exit_code
            if not stop.is_set():
                log.error(
                    "worker process %d ended (%s): stopping the server",
                    pid,
                    _describe_status(status),
                )
                exit_code = 1
                stop.set()

        watchers = role.watch_children(
            lambda pid, status: loop.call_soon_threadsafe(worker_ended, pid, status)
        )
        loop.add_signal_handler(signal.SIGUSR1, node.tiering.nudge)
        node.service.flush_peers = functools.partial(flush_workers, role)
        role.release_workers()
    else:
        flush = functools.partial(answer_flush, role, node.flush_for_primary)
        publisher = MetricsPublisher(observer.requests, metrics_file(role.run_dir, role.index))
        publishing = Periodic(
            "metrics",
            publisher.publish,
            interval=PUBLISH_INTERVAL,
            log=log,
            what="publishing the request metrics",
        )
        publishing.start()

        def flush_now() -> None:
            task = loop.create_task(flush())
            background.add(task)
            task.add_done_callback(background.discard)

        loop.add_signal_handler(signal.SIGUSR2, flush_now)
    console = await start_console(
        node,
        server,
        _endpoint(role, tls is not None) if role.primary else None,
        tls.listening if tls is not None else None,
    )
    if not role.primary:
        early = signals_while_starting()
        if signal.SIGHUP in early and reload is not None:
            reload_config(node, parts, reload, role)
        if signal.SIGUSR2 in early:
            flush_now()
    if role.primary:
        sd_notify("READY=1\nSTATUS=serving")
    memory.freeze_startup_heap()  # full collections then skip start-up's objects: no 40 ms pauses
    memory.release()  # what starting up (recovery, opening the stores) freed, back to the OS
    await stop.wait()
    observer.serving = False  # /health/ready: 503 while requests in flight finish
    if role.primary:
        sd_notify("STOPPING=1")
        role.signal_children(signal.SIGTERM)
        log.info("shutting down: finishing requests in flight")
    await console.stop()
    await runner.cleanup()
    killed = False
    if role.primary and role.children:
        killed = await _reap(role, watchers)
    if publishing is not None:
        await publishing.stop()
    if forwarder is not None:
        await forwarder.close()
    await node.stop(clean=role.primary and exit_code == 0 and not killed)
    if role.primary:
        server_file.unlink(missing_ok=True)
    return exit_code


async def _reap(role: Role, watchers: list[threading.Thread]) -> bool:
    """Wait for the workers to finish their requests; kill those that take too long (then
    True: a killed worker may have left a write half done)."""
    loop = asyncio.get_running_loop()

    def join_all(timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in watchers:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in watchers)

    if await loop.run_in_executor(None, join_all, STOP_TIMEOUT):
        return False
    log.error("workers still running after %.0f s: killing them", STOP_TIMEOUT)
    role.signal_children(signal.SIGKILL)
    await loop.run_in_executor(None, join_all, 5.0)
    return True


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _clear_metrics(run_dir: Path) -> None:
    for old in run_dir.glob("metrics-*"):
        old.unlink(missing_ok=True)


def _url(host: str, port: int, tls: bool) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def _endpoint(role: Role, tls: bool) -> str:
    """Where a client on this machine reaches the server (``server.json``, for the ``stratum``
    commands): a wildcard address is reached through loopback."""
    host, port = role.address
    local = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return _url(local, port, tls)


def _announce(node: Node, role: Role, tls: bool) -> None:
    config = node.config
    user = node.root.user
    processes = f" ({role.count} processes)" if role.shared else ""
    print(
        f"Stratum {__version__} serving S3 at {_url(*role.address, tls)} "
        f"region {config.server.region} access key {user.access_key}{processes}",
        flush=True,
    )
    if node.root.generated:
        print(
            f"  new root secret key (shown once; kept in "
            f"{config.storage.data_dir / ROOT_FILE}): {user.secret_key}",
            flush=True,
        )


# A connection's responses before one closes it, with several processes (web/app.py's
# make_app says why); nginx's keepalive_requests was 100 too, before it became 1000.
REQUESTS_PER_CONNECTION = 100
TLS_KEYS = frozenset({"server.tls_cert", "server.tls_key"})

# What SIGHUP applies to a running server; any other change is logged as needing a restart.
# (Users added with ``stratum user`` need neither: they are looked up per request.)
LIVE_KEYS = frozenset(
    {
        "server.access_log",
        "server.body_timeout",
        "server.log_format",
        "server.metrics_loopback_only",
        "server.metrics_token",
        "server.tls_cert",
        "server.tls_key",
        "server.access_key",
        "server.secret_key",
        "scrub.interval",
        "scrub.rate",
    }
)


@dataclass
class LiveParts:
    """What SIGHUP changes in a process, besides its node's configuration."""

    server: S3Server
    observer: Observer
    tls: ServerTls | None  # None: plain HTTP (switching needs a restart)


def reload_config(
    node: Node, parts: LiveParts, load: Callable[[], Config], role: Role | None = None
) -> None:
    """Re-read the configuration and apply what can change live (in every process)."""
    if role is not None and not role.primary:
        _reload(node, parts, load)
        return
    now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    sd_notify(f"RELOADING=1\nMONOTONIC_USEC={now_us}\nSTATUS=reloading")
    try:
        if role is not None:
            role.signal_children(signal.SIGHUP)
        _reload(node, parts, load)
    finally:
        sd_notify("READY=1\nSTATUS=serving")


def _reload(node: Node, parts: LiveParts, load: Callable[[], Config]) -> None:
    try:
        new = load()
    except ConfigError as exc:
        log.error("reload refused, the configuration in use is unchanged: %s", exc)
        return
    old = node.config
    before, after = _flat(old), _flat(new)
    changed = sorted(k for k in after if after[k] != before.get(k))
    live_keys = LIVE_KEYS
    if (parts.tls is None) != (new.server.tls_cert is None):
        live_keys -= TLS_KEYS  # HTTP <-> HTTPS: the sockets must be made again
    live = [k for k in changed if k in live_keys]
    restart = [k for k in changed if k not in live_keys]
    if new.server.log_format != old.server.log_format:
        setup_logging(new)
    if parts.tls is not None and new.server.tls_cert is not None and new.server.tls_key:
        _reload_certificate(parts.tls, new.server.tls_cert, new.server.tls_key)
    server = parts.server
    server.settings = dataclasses.replace(
        server.settings,
        access_log=new.server.access_log,
        body_timeout=new.server.body_timeout,
    )
    if "server.access_key" in changed or "server.secret_key" in changed:
        node.root = load_root_credentials(
            new.storage.data_dir, new.server.access_key, new.server.secret_key
        )
        node.users.root = node.root.user
    parts.observer.access = _metrics_access(new)
    node.maintenance.interval = new.scrub.interval
    node.maintenance.rate = new.scrub.rate
    live_server = {k.partition(".")[2] for k in live_keys if k.startswith("server.")}
    node.config = dataclasses.replace(
        old,
        server=dataclasses.replace(old.server, **{k: getattr(new.server, k) for k in live_server}),
        scrub=new.scrub,
    )
    log.info("configuration reloaded: %s", ", ".join(live) or "nothing to apply")
    if restart:
        log.warning("changed, applied only after a restart: %s", ", ".join(restart))


def _reload_certificate(tls: ServerTls, cert: Path, key: Path) -> None:
    """Every SIGHUP: a certificate renewed in place has the same paths."""
    try:
        tls.reload(cert, key)
    except (OSError, ssl.SSLError) as exc:
        log.error("TLS certificate not reloaded, the one in use stays: %s", exc)
    else:
        log.info("TLS certificate loaded from %s", cert)


def _metrics_access(config: Config) -> MetricsAccess:
    return MetricsAccess(config.server.metrics_token, config.server.metrics_loopback_only)


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
