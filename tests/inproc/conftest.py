"""In-process fixtures: the real Node and S3 app, served by aiohttp's test server.

Requests are signed with botocore's own SigV4 signer, so these tests go through the
same authentication as any client, without a subprocess.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from yarl import URL

from stratum.config import load_config
from stratum.node import Node
from stratum.s3.context import ApiSettings
from stratum.s3.server import S3Server
from stratum.util.clock import ManualClock
from stratum.web.app import make_app

ACCESS, SECRET = "INPROCKEY", "inproc-secret-key"


@dataclass
class InProc:
    node: Node
    client: TestClient[Any, Any]
    clock: ManualClock

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        sign_body: bool = True,
    ) -> ClientResponse:
        url = f"http://{self.client.host}:{self.client.port}{path}"
        hdrs = dict(headers or {})
        if not sign_body:
            hdrs["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        aws = AWSRequest(method=method, url=url, data=body, headers=hdrs)
        signer = S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", "us-east-1")
        signer.add_auth(aws)
        prepared = aws.prepare()
        return await self.client.session.request(
            method,
            URL(prepared.url, encoded=True),
            data=body,
            headers=dict(prepared.headers),
            skip_auto_headers={"Content-Type"},
        )


@pytest.fixture
async def inproc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[InProc]:
    async with serving(monkeypatch, {"storage.data_dir": tmp_path / "data"}) as running:
        yield running


@contextlib.asynccontextmanager
async def serving(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any]
) -> AsyncIterator[InProc]:
    """A Node with these config overrides, and its S3 app served in process."""
    monkeypatch.setenv("STRATUM_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("STRATUM_SECRET_KEY", SECRET)
    clock = ManualClock(time.time())
    node = Node.open(load_config(overrides=overrides), clock)
    await node.start()
    settings = ApiSettings(region="us-east-1", domain="", access_log=False)
    app = make_app(S3Server(node.service, node.multipart, node.users, settings, clock))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield InProc(node, client, clock)
    finally:
        await client.close()
        await node.stop()
        node.close()
