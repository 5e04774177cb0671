"""``stratum serve`` imports aiohttp without the CA store its client contexts would load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, os
from stratum.cli.main import _import_aiohttp_without_ca_store
_import_aiohttp_without_ca_store()
import aiohttp.connector as c
print(json.dumps({
    "certs": c._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509"],
    "file": os.environ.get("SSL_CERT_FILE"),
    "dir": os.environ.get("SSL_CERT_DIR"),
}))
"""


def probe(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=REPO, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def test_no_ca_store_in_aiohttps_contexts_and_the_environment_is_restored() -> None:
    base = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    base["PYTHONPATH"] = str(REPO)
    assert probe(base) == {"certs": 0, "file": None, "dir": None}
    mine = dict(base, SSL_CERT_FILE="/etc/ssl/certs/ca-certificates.crt", SSL_CERT_DIR="/x")
    assert probe(mine) == {
        "certs": 0,
        "file": "/etc/ssl/certs/ca-certificates.crt",
        "dir": "/x",
    }
