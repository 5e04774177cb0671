"""The command-line clients over HTTPS with a self-signed certificate, set up as
docs/operating.md says: aws --ca-bundle, rclone --ca-cert, restic --cacert, s3cmd
ca_certs_file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.clients import AwsCli, Rclone, find_tool, isolated_env, run
from tests.server.conftest import RunningServer, start_server
from tests.server.faultload import stop_cleanly
from tests.tlscerts import make_certificate


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    base = tmp_path_factory.mktemp("tls-clients")
    cert, key = base / "stratum.pem", base / "stratum-key.pem"
    make_certificate(cert, key)
    config = base / "stratum.toml"
    config.write_text(
        f'[server]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
        f'[storage]\ndata_dir = "{base / "data"}"\n'
    )
    server = start_server(base / "data", config=config)
    assert server.endpoint.startswith("https://")
    yield server, cert
    stop_cleanly(server)


def test_awscli_with_ca_bundle(secure: tuple[RunningServer, Path], tmp_path: Path) -> None:
    server, cert = secure
    aws = AwsCli(server, tmp_path / "home")
    (tmp_path / "note.txt").write_text("over TLS\n")
    aws("--ca-bundle", cert, "s3", "mb", "s3://aws-tls")
    aws("--ca-bundle", cert, "s3", "cp", tmp_path / "note.txt", "s3://aws-tls/note.txt")
    listed = aws("--ca-bundle", cert, "s3", "ls", "s3://aws-tls/")
    assert "note.txt" in listed.stdout
    refused = aws("s3", "ls", check=False)  # without it: the certificate is not trusted
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr


def test_rclone_with_ca_cert(secure: tuple[RunningServer, Path], tmp_path: Path) -> None:
    server, cert = secure
    rclone = Rclone(server, tmp_path / "home")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("a")
    rclone("--ca-cert", cert, "mkdir", "stratum:rclone-tls")
    rclone("--ca-cert", cert, "copy", tmp_path / "docs", "stratum:rclone-tls")
    assert "a.txt" in rclone("--ca-cert", cert, "ls", "stratum:rclone-tls").stdout
    assert rclone("ls", "stratum:rclone-tls", check=False).returncode != 0


def test_restic_with_cacert(secure: tuple[RunningServer, Path], tmp_path: Path) -> None:
    server, cert = secure
    env = isolated_env(server, tmp_path / "home")
    env.update(RESTIC_REPOSITORY=f"s3:{server.endpoint}/restic-tls", RESTIC_PASSWORD="not-a-secret")
    restic = find_tool("restic")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.txt").write_text("b")
    run([restic, "--cacert", str(cert), "init"], env=env, server=server)
    run([restic, "--cacert", str(cert), "backup", str(tmp_path / "docs")], env=env, server=server)
    run([restic, "--cacert", str(cert), "check"], env=env, server=server)


def test_s3cmd_with_ca_certs_file(secure: tuple[RunningServer, Path], tmp_path: Path) -> None:
    server, cert = secure
    env = isolated_env(server, tmp_path / "home")
    hostport = server.endpoint.removeprefix("https://")
    config = tmp_path / "s3cfg"
    config.write_text(
        "[default]\n"
        f"access_key = {server.access_key}\n"
        f"secret_key = {server.secret_key}\n"
        f"host_base = {hostport}\n"
        f"host_bucket = {hostport}\n"
        "use_https = True\n"
        f"ca_certs_file = {cert}\n"
        "signature_v2 = False\n"
    )
    s3cmd = find_tool("s3cmd")
    run([s3cmd, "-c", str(config), "mb", "s3://s3cmd-tls"], env=env, server=server)
    listed = run([s3cmd, "-c", str(config), "ls"], env=env, server=server)
    assert "s3://s3cmd-tls" in listed.stdout
