"""The web console's protections over plain HTTP: cookie flags, headers, CSRF, the login rate
limit, sessions that end, and what needs a session; and ``[console] listen = ""``, which
opens no port at all."""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import pytest

from tests.server.browser import console_url, start_console_server
from tests.server.conftest import ACCESS_KEY, SECRET_KEY, RunningServer, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_console_server(tmp_path_factory.mktemp("console-http"))
    yield srv
    assert srv.stop() == 0, "".join(srv.output[-40:])


def session(source: str = "127.0.0.1") -> aiohttp.ClientSession:
    """A browser-like client connecting from ``source`` (another loopback address is another
    client to the login rate limit)."""
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        connector=aiohttp.TCPConnector(local_addr=(source, 0)),
    )


async def log_in(
    http: aiohttp.ClientSession, console: str, access: str = ACCESS_KEY, secret: str = SECRET_KEY
) -> aiohttp.ClientResponse:
    async with http.get(f"{console}/login") as page:
        token = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert token is not None
    form = {"csrf": token.group(1), "access_key": access, "secret_key": secret}
    async with http.post(f"{console}/login", data=form, allow_redirects=False) as answer:
        await answer.read()
        return answer


async def csrf_of(http: aiohttp.ClientSession, console: str) -> str:
    async with http.get(f"{console}/buckets") as page:
        token = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert token is not None
    return token.group(1)


async def add_user(root: aiohttp.ClientSession, console: str, csrf: str, access_key: str) -> str:
    """Add a user on the Users page (as root); the secret key the page shows once."""
    form = {"csrf": csrf, "access_key": access_key, "name": access_key.title()}
    async with root.post(f"{console}/users", data=form) as added:
        secret = re.search(r'id="shown-secret" value="([^"]+)"', await added.text())
    assert secret is not None
    return secret.group(1)


async def test_cookie_and_headers(server: RunningServer) -> None:
    console = server.console  # type: ignore[attr-defined]
    async with session() as http:
        answer = await log_in(http, console)
        assert answer.status == 302 and answer.headers["Location"] == "/overview"
        cookie = SimpleCookie(answer.headers["Set-Cookie"])["stratum_console"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
        assert not cookie["secure"]  # plain HTTP here; Secure under TLS
        async with http.get(f"{console}/buckets") as page:
            assert page.status == 200
            csp = page.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert page.headers["X-Frame-Options"] == "DENY"
            assert page.headers["Cache-Control"] == "no-store"


async def test_without_a_session_pages_send_to_login_and_scripts_get_401(
    server: RunningServer,
) -> None:
    console = server.console  # type: ignore[attr-defined]
    async with session() as http:
        async with http.get(f"{console}/overview", allow_redirects=False) as page:
            assert page.status == 302 and page.headers["Location"] == "/login"
        headers = {"X-Requested-With": "stratum-console", "X-CSRF-Token": "x"}
        async with http.put(
            f"{console}/b/any/upload?key=k", data=b"data", headers=headers
        ) as upload:
            assert upload.status == 401
        async with http.get(f"{console}/static/console.css") as css:
            assert css.status == 200  # static files need no session


async def test_script_requests_need_the_csrf_header(server: RunningServer) -> None:
    console = server.console  # type: ignore[attr-defined]
    s3 = await asyncio.to_thread(server.client)  # boto3 works in a thread: it blocks
    await asyncio.to_thread(s3.create_bucket, Bucket="csrf-uploads")
    async with session() as http:
        await log_in(http, console)
        token = await csrf_of(http, console)
        url = f"{console}/b/csrf-uploads/upload?key=note.txt"
        async with http.put(url, data=b"hello") as refused:
            assert refused.status == 403
        async with http.put(url, data=b"hello", headers={"X-CSRF-Token": "forged"}) as refused:
            assert refused.status == 403
        listed = await asyncio.to_thread(s3.list_objects_v2, Bucket="csrf-uploads")
        assert listed["KeyCount"] == 0
        async with http.put(url, data=b"hello", headers={"X-CSRF-Token": token}) as done:
            assert done.status == 200, await done.text()
        got = await asyncio.to_thread(s3.get_object, Bucket="csrf-uploads", Key="note.txt")
        body = await asyncio.to_thread(got["Body"].read)
        assert body == b"hello"


async def test_failed_logins_are_rate_limited(server: RunningServer) -> None:
    console = server.console  # type: ignore[attr-defined]
    async with session("127.0.0.2") as http:
        statuses = [(await log_in(http, console, secret="wrong-secret")).status for _ in range(6)]
        assert statuses == [403] * 5 + [429]
        # the right keys are refused too while the client waits
        answer = await log_in(http, console)
        assert answer.status == 429 and int(answer.headers["Retry-After"]) > 0
    async with session("127.0.0.3") as other:  # another client is not held back
        assert (await log_in(other, console)).status == 302


async def test_logout_and_a_new_secret_end_sessions(server: RunningServer) -> None:
    console = server.console  # type: ignore[attr-defined]
    async with session() as bob, session() as root:
        await log_in(root, console)
        token = await csrf_of(root, console)
        secret = await add_user(root, console, token, "bob")
        assert (await log_in(bob, console, "bob", secret)).status == 302
        async with bob.get(f"{console}/buckets", allow_redirects=False) as page:
            assert page.status == 200
        form = {"csrf": token, "access_key": "bob"}
        async with root.post(f"{console}/users/rotate", data=form) as rotated:
            assert rotated.status == 200
            assert "given a new secret key" in await rotated.text()
        async with bob.get(f"{console}/buckets", allow_redirects=False) as page:
            assert page.status == 302  # bob's session ended with his old secret
        assert (await log_in(bob, console, "bob", secret)).status == 403
        async with root.post(f"{console}/logout", data={"csrf": token}, allow_redirects=False):
            pass
        async with root.get(f"{console}/buckets", allow_redirects=False) as page:
            assert page.status == 302


async def test_removing_a_user_who_owns_buckets_asks_what_becomes_of_them(
    server: RunningServer,
) -> None:
    console = server.console  # type: ignore[attr-defined]
    async with session() as carol, session() as root:
        await log_in(root, console)
        token = await csrf_of(root, console)
        secret = await add_user(root, console, token, "carol")
        await log_in(carol, console, "carol", secret)
        form = {"csrf": await csrf_of(carol, console), "name": "carols-files"}
        async with carol.post(f"{console}/buckets", data=form) as made:
            assert made.status == 200
        remove = {"csrf": token, "access_key": "carol"}
        async with root.post(f"{console}/users/remove", data=remove) as refused:
            assert refused.status == 400
            assert "owns 1 bucket(s): carols-files" in await refused.text()
        async with root.post(f"{console}/users/remove", data={**remove, "buckets": "root"}) as done:
            assert done.status == 200
            assert "carol" not in await done.text()
    s3 = await asyncio.to_thread(server.client)
    names = [b["Name"] for b in (await asyncio.to_thread(s3.list_buckets))["Buckets"]]
    assert "carols-files" in names  # root's now
    await asyncio.to_thread(s3.delete_bucket, Bucket="carols-files")


async def test_a_secret_changed_outside_the_console_ends_its_sessions(
    server: RunningServer,
) -> None:
    console = server.console  # type: ignore[attr-defined]
    async with session() as dave, session() as root:
        await log_in(root, console)
        token = await csrf_of(root, console)
        secret = await add_user(root, console, token, "dave")
        assert (await log_in(dave, console, "dave", secret)).status == 302
        config = str(server.config)  # type: ignore[attr-defined]
        command = [*_stratum(), "user", "secret", "dave", "dave-new-secret-1", "--config", config]
        process = await asyncio.create_subprocess_exec(*command)
        assert await process.wait() == 0
        async with dave.get(f"{console}/buckets", allow_redirects=False) as page:
            assert page.status == 302  # to the login page: the old secret no longer signs
        assert (await log_in(dave, console, "dave", "dave-new-secret-1")).status == 302


def _stratum() -> list[str]:
    from tests.server.conftest import stratum_command

    return stratum_command()


# Known and not yet explained: with TLS on both ports, the server's loop is held ~100 ms once
# by C code holding the GIL (the watchdog gets no stack sample), and the test's own loop by
# the key generation of make_certificate in a thread (cryptography keeps the GIL).
@pytest.mark.blocks_loop
async def test_under_tls_the_console_serves_the_same_certificate(tmp_path: Path) -> None:
    from tests.tlscerts import make_certificate

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await asyncio.to_thread(make_certificate, cert, key)
    settings = f'[server]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    srv = await asyncio.to_thread(start_console_server, tmp_path, settings)
    try:
        console = srv.console  # type: ignore[attr-defined]
        assert console.startswith("https://")
        trusted = await asyncio.to_thread(ssl.create_default_context, cafile=str(cert))
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(ssl=trusted),
        ) as http:
            answer = await log_in(http, console)  # the console checks the keys over TLS too
            assert answer.status == 302
            cookie = SimpleCookie(answer.headers["Set-Cookie"])["stratum_console"]
            assert cookie["secure"]
            async with http.get(f"{console}/buckets") as page:
                assert page.status == 200
    finally:
        assert await asyncio.to_thread(srv.stop) == 0, "".join(srv.output[-40:])


def listening_ports(server: RunningServer) -> set[int]:
    """The TCP ports the server's processes (the primary and its workers, one process group)
    listen on, read from /proc: what a port scan of the machine would find open."""
    group = server.process.pid
    sockets: set[str] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the process group is the 5th field, after the name in parentheses
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[2]) != group:
                continue
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    sockets.add(target[8:-1])
        except OSError:
            continue  # a process that ended meanwhile
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            columns = line.split()
            if columns[3] == "0A" and columns[9] in sockets:  # 0A: LISTEN
                ports.add(int(columns[1].rpartition(":")[2], 16))
    return ports


@pytest.mark.parametrize("listen", ["", "127.0.0.1:0"])
def test_an_empty_listen_opens_no_console_port(tmp_path: Path, listen: str) -> None:
    """One process (no private port between processes): the S3 port alone is open, or the S3
    port and the console's (the contrast that shows the count finds a console port)."""
    config = tmp_path / "stratum.toml"
    config.write_text(
        f'[server]\nworkers = 1\n\n[storage]\ndata_dir = "{tmp_path / "data"}"\n\n'
        f'[console]\nlisten = "{listen}"\n'
    )
    srv = start_server(tmp_path / "data", config=config)
    try:
        expected = {int(srv.endpoint.rpartition(":")[2])}
        if listen:
            expected.add(int(console_url(srv).rpartition(":")[2]))
        else:
            # The console would start just after the S3 port is announced: watch a while.
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                assert listening_ports(srv) == expected
                time.sleep(0.2)
            assert not any("web console" in line for line in srv.output), srv.output
        assert listening_ports(srv) == expected
    finally:
        assert srv.stop() == 0, "".join(srv.output[-40:])
