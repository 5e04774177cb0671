"""The server side of TLS, as both the configuration check and the server load it."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context with ``cert`` (PEM, the chain after the certificate) and ``key``
    (PEM, not encrypted: an encrypted one fails rather than prompting for a password).
    TLS 1.2 and 1.3, Python's secure defaults otherwise (no compression, the server's cipher
    order). No client certificates, so no CA store is loaded (megabytes in every process).
    Raises OSError or ssl.SSLError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key, password=b"")
    return context
