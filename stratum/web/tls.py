"""HTTPS on the S3 port: ``[server] tls_cert`` and ``tls_key``, replaced live on SIGHUP.

The listening sockets get one :class:`ssl.SSLContext` for their whole life (aiohttp has no way
to swap it), so that context picks, as each handshake begins, the context holding the
certificate loaded last: its ``sni_callback`` (which OpenSSL calls for every ClientHello,
with or without a server name) points the connection at :attr:`ServerTls.current`. Reloading
builds a new context from the files and, only if that worked, makes it current: connections
already open keep the certificate they were made with, new ones get the new one, none is
dropped, and a bad new file leaves the old certificate serving.

Settings (:func:`stratum.util.tls.server_context`): TLS 1.2 and 1.3 only, Python's server
defaults otherwise; no client certificates.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from stratum.util.tls import server_context


class ServerTls:
    """The context the sockets listen with, and the certificate new connections get."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.listening = server_context(cert, key)
        self.current = self.listening
        self.listening.sni_callback = self._pick

    def reload(self, cert: Path, key: Path) -> None:
        """Serve ``cert`` to new connections; raises (and changes nothing) if unusable."""
        self.current = server_context(cert, key)

    def _pick(self, connection: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        if self.current is not self.listening:
            connection.context = self.current


#: how long a start waits for a certificate and key that do not match to become a pair
RENEWAL_WAIT = 5.0


async def load_server_tls(cert: Path, key: Path, wait: float = RENEWAL_WAIT) -> ServerTls:
    """:class:`ServerTls` from the files, waiting up to ``wait`` seconds while the key does
    not match the certificate: a renewal (certbot, the appliance) replaces the two files one
    after the other, and a process starting between the two (a worker forked a moment
    earlier) read the new key with the old certificate and ended the server. Any other
    error, or a mismatch that outlasts the wait, is raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            return ServerTls(cert, key)
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" not in str(exc) or loop.time() >= deadline:
                raise
        await asyncio.sleep(0.05)
