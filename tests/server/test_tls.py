"""HTTPS on the S3 port, as boto3 and the ``stratum`` commands use it, and a certificate
renewed under a running server with SIGHUP."""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import SSLError

from tests.server.conftest import RunningServer, start_server
from tests.server.faultload import stop_cleanly, wait_for_log
from tests.tlscerts import make_certificate

WORKERS = 2


def _start(tmp_path: Path) -> tuple[RunningServer, Path, Path, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    fingerprint = make_certificate(cert, key)
    config = tmp_path / "stratum.toml"
    config.write_text(
        f'[server]\nworkers = {WORKERS}\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
    )
    server = start_server(tmp_path / "data", config=config)
    server.config = config  # type: ignore[attr-defined]
    return server, cert, key, fingerprint


def _presented(server: RunningServer, trusted: Path) -> tuple[http.client.HTTPSConnection, str]:
    """A connection trusting only ``trusted``, and the fingerprint the server presented."""
    url = urlsplit(server.endpoint)
    context = ssl.create_default_context(cafile=str(trusted))
    connection = http.client.HTTPSConnection(url.hostname or "", url.port, context=context)
    connection.connect()
    assert connection.sock is not None
    der = connection.sock.getpeercert(binary_form=True)
    assert der is not None
    return connection, hashlib.sha256(der).hexdigest()


def _live(connection: http.client.HTTPSConnection) -> int:
    connection.request("GET", "/health/live")
    response = connection.getresponse()
    response.read()
    return response.status


def test_boto3_and_the_stratum_commands_over_https(tmp_path: Path) -> None:
    server, cert, _, _ = _start(tmp_path)
    try:
        assert server.endpoint.startswith("https://127.0.0.1:")
        s3 = server.client(verify=str(cert))
        s3.create_bucket(Bucket="secure")
        big = os.urandom(9 << 20)  # boto3 uploads it in parts
        s3.upload_fileobj(io.BytesIO(big), "secure", "big")
        s3.put_object(Bucket="secure", Key="small", Body=b"over TLS")
        assert s3.get_object(Bucket="secure", Key="small")["Body"].read() == b"over TLS"
        assert s3.get_object(Bucket="secure", Key="big")["Body"].read() == big
        assert s3.list_objects_v2(Bucket="secure")["KeyCount"] == 2
        # A client that does not trust the certificate gets nowhere.
        with pytest.raises(SSLError):
            server.client().list_buckets()
        # Plain HTTP on the port gets no answer.
        url = urlsplit(server.endpoint)
        plain = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            plain.request("GET", "/health/live")
            plain.getresponse()
        plain.close()
        # The stratum commands find the server (server.json) and trust its certificate.
        env = dict(os.environ, STRATUM_ACCESS_KEY=server.access_key)
        env["STRATUM_SECRET_KEY"] = server.secret_key
        config = str(server.config)  # type: ignore[attr-defined]
        done = subprocess.run(
            [sys.executable, "-m", "stratum", "scrub", "--status", "--config", config],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert '"last_pass"' in done.stdout
    finally:
        stop_cleanly(server)


def test_sighup_loads_a_renewed_certificate_without_dropping_connections(
    tmp_path: Path,
) -> None:
    server, cert, key, first = _start(tmp_path)
    try:
        old_trust = tmp_path / "first.pem"
        old_trust.write_bytes(cert.read_bytes())
        kept, presented = _presented(server, old_trust)
        assert presented == first and _live(kept) == 200
        # Renewed in place, as certbot or the appliance would.
        renewed_cert, renewed_key = tmp_path / "renewed.pem", tmp_path / "renewed-key.pem"
        second = make_certificate(renewed_cert, renewed_key)
        os.replace(renewed_key, key)
        os.replace(renewed_cert, cert)
        server.process.send_signal(signal.SIGHUP)
        wait_for_log(server, "TLS certificate loaded from", WORKERS)
        assert _live(kept) == 200  # the open connection goes on, with the old certificate
        for _ in range(6):  # every process presents the new one to new connections
            fresh, presented = _presented(server, cert)
            assert presented == second
            assert _live(fresh) == 200
            fresh.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            _presented(server, old_trust)
        # A renewal gone wrong is refused; the certificate in use stays.
        key.write_text("not a key\n")
        server.process.send_signal(signal.SIGHUP)
        wait_for_log(server, "reload refused", WORKERS)
        fresh, presented = _presented(server, cert)
        assert presented == second and _live(fresh) == 200
        assert _live(kept) == 200
        fresh.close()
        kept.close()
    finally:
        stop_cleanly(server)
