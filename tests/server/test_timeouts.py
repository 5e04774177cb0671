"""Idle and slow clients are timed out as S3 times them out; slow but steady ones are not.

The server runs with ``idle_timeout`` and ``body_timeout`` of one second, and every client
here is a raw socket, so what it sends and when is exactly what the test says.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.server.conftest import RunningServer, start_server
from tests.server.faultload import stop_cleanly

TIMEOUT = 1.0
TIMED_OUT = (
    b"<Code>RequestTimeout</Code><Message>Your socket connection to the server was not read "
    b"from or written to within the timeout period. Idle connections will be closed.</Message>"
)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("timeouts")
    config = base / "stratum.toml"
    config.write_text(
        f'[server]\nidle_timeout = "{TIMEOUT}s"\nbody_timeout = "{TIMEOUT}s"\n'
        f'[storage]\ndata_dir = "{base / "data"}"\n'
    )
    server = start_server(base / "data", config=config)
    server.client().create_bucket(Bucket="slow")
    yield server
    stop_cleanly(server)


def connect(server: RunningServer) -> socket.socket:
    url = urlsplit(server.endpoint)
    return socket.create_connection((url.hostname, url.port), timeout=30)


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` within ``seconds``, and what it sent first."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


def signed_put(server: RunningServer, key: str, body: bytes) -> bytes:
    """The head (request line and headers) of a SigV4-signed PUT of ``body``."""
    url = f"{server.endpoint}/slow/{key}"
    request = AWSRequest(method="PUT", url=url, data=body)
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", "us-east-1").add_auth(
        request
    )
    lines = [f"PUT /slow/{key} HTTP/1.1", f"Host: {urlsplit(url).netloc}"]
    lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_slow_headers_and_idle_connections_are_closed(strict: RunningServer) -> None:
    idle = connect(strict)
    dripping = [connect(strict) for _ in range(50)]
    for sock in dripping:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    while time.monotonic() - started < 4 * TIMEOUT:  # a header byte every 0.2 s
        for sock in dripping:
            try:
                sock.sendall(b"X")
            except OSError:
                pass
        time.sleep(0.2)
    for sock in [idle, *dripping]:
        closed, _ = closed_within(sock, 2 * TIMEOUT)
        assert closed, "a connection outlived idle_timeout"
        sock.close()
    assert strict.client().list_buckets()["Buckets"][0]["Name"] == "slow"


def test_a_stalled_body_is_a_request_timeout(strict: RunningServer) -> None:
    sock = connect(strict)
    sock.sendall(signed_put(strict, "stalled", b"0123456789" * 10) + b"0123456789")
    sent = time.monotonic()
    closed, answer = closed_within(sock, 5 * TIMEOUT)
    sock.close()
    assert closed, f"the server still waits for the body: {answer!r}"
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert TIMED_OUT in answer
    assert time.monotonic() - sent < 5 * TIMEOUT
    with pytest.raises(Exception, match="404"):
        strict.client().head_object(Bucket="slow", Key="stalled")


def test_a_slow_but_steady_upload_is_not_cut(strict: RunningServer) -> None:
    body = bytes(range(256)) * 4  # 1 KiB, sent over 5 body timeouts
    sock = connect(strict)
    sock.sendall(signed_put(strict, "steady", body))
    pieces = [body[i : i + 64] for i in range(0, len(body), 64)]
    pause = 5 * TIMEOUT / len(pieces)
    for piece in pieces:
        sock.sendall(piece)
        time.sleep(pause)
    sock.settimeout(10)
    answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    got = strict.client().get_object(Bucket="slow", Key="steady")["Body"].read()
    assert got == body
