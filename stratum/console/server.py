"""Starting and stopping the console: its own listening socket, beside the S3 port.

The primary server process serves it (:func:`start_console`); it is an S3 client of the
server's own port over loopback. A console that cannot listen (the port is taken) is logged as
an error and left out: the object store goes on serving S3. Every process, workers too,
records the object requests it serves for the tiering what-if.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from stratum.config import Config, split_listen
from stratum.console.accesses import AccessRecorder
from stratum.console.client import S3Client
from stratum.console.history import History
from stratum.node import Node
from stratum.s3.server import S3Server
from stratum.util.imports import import_off_loop
from stratum.util.tls import server_context

log = logging.getLogger("stratum.console")


@dataclass
class RunningConsole:
    """What :func:`start_console` started in one process; :meth:`stop` ends it."""

    recorder: AccessRecorder
    runner: web.AppRunner | None = None
    client: S3Client | None = None
    history: History | None = None
    url: str = ""

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.client is not None:
            await self.client.close()
        if self.history is not None:
            await self.history.stop()
        await self.recorder.stop()


def tls_files(config: Config) -> tuple[Path, Path] | None:
    """The certificate and key the S3 port serves TLS with, if it does."""
    cert, key = config.server.tls_cert, config.server.tls_key
    return (cert, key) if cert is not None and key is not None else None


class PinnedCertificate:
    """Trust for the console's loopback requests: exactly the server's own certificate, read
    again when its file changes (a renewal that SIGHUP gave the S3 port). The name is not
    checked: the console connects to an address on this machine that the certificate may not
    list."""

    def __init__(self, cert: Path) -> None:
        self.cert = cert
        self._seen: tuple[int, int] | None = None
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        """Blocking for a stat (microseconds); a new context only when the file changed."""
        try:
            stat = self.cert.stat()
            seen = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            seen = self._seen or (0, 0)
        if self._context is None or seen != self._seen:
            context = ssl.create_default_context(cafile=str(self.cert))
            context.check_hostname = False
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a CA-issued leaf, pinned
            self._context, self._seen = context, seen
        return self._context


async def start_console(
    node: Node,
    s3: S3Server,
    s3_endpoint: str | None,
    tls: ssl.SSLContext | None = None,
) -> RunningConsole:
    """In every server process: record the object requests it serves (the what-if's access
    history). In the primary (``s3_endpoint``: where it serves S3): also take the history
    samples and serve the console on ``[console] listen`` unless that is empty (or taken:
    then the console is left out, with an error in the log); ``tls``: the S3 port's listening
    context, whose certificate (renewed on SIGHUP) the console serves too."""
    config = node.config
    recorder = AccessRecorder(node.meta, node.clock, config.console.access_history)
    s3.on_finished = recorder.attach(s3.on_finished)
    recorder.start()
    running = RunningConsole(recorder)
    if s3_endpoint is None or not config.console.listen:
        return running
    running.history = History(node, config.console.history_interval)
    running.history.start()
    try:
        running.client, running.runner, running.url = await _serve(
            node, running.history, s3_endpoint, tls
        )
    except OSError as exc:
        listen = config.console.listen
        log.error(
            "no web console: cannot listen on %s: %s (S3 is served all the same)", listen, exc
        )
        return running
    print(f"  web console at {running.url} (log in with an access key and secret key)", flush=True)
    return running


async def _serve(
    node: Node, history: History, s3_endpoint: str, server_tls: ssl.SSLContext | None
) -> tuple[S3Client, web.AppRunner, str]:
    # Imported here, off the loop: Jinja2 and the pages are the primary's alone.
    await import_off_loop(
        "stratum.console.app", "stratum.console.objects", "stratum.console.operator"
    )
    from stratum.console.app import Console, make_app
    from stratum.console.objects import ObjectPages
    from stratum.console.operator import OperatorPages

    config = node.config
    tls = tls_files(config)
    client = S3Client(
        s3_endpoint,
        config.server.region,
        node.clock,
        trust=PinnedCertificate(tls[0]).context if tls else None,
    )
    console = Console(
        client,
        node.users,
        node.clock,
        lifetime=config.console.session_lifetime,
        secure=tls is not None,
    )
    s3_port = int(s3_endpoint.rpartition(":")[2])
    objects = ObjectPages(console, "https" if tls else "http", config.server.host, s3_port)
    operator = OperatorPages(console, history, config)
    app = make_app(console, objects.add_routes, operator.add_routes)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=10)
    await runner.setup()
    host, port = split_listen(config.console.listen)
    if tls is not None and server_tls is None:
        server_tls = server_context(tls[0], tls[1])
    try:
        await web.TCPSite(runner, host, port, ssl_context=server_tls).start()
    except OSError:
        await runner.cleanup()
        await client.close()
        raise
    bound = runner.addresses[0][1]
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    shown = f"[{shown}]" if ":" in shown else shown
    return client, runner, f"{'https' if tls else 'http'}://{shown}:{bound}"
