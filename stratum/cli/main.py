"""``stratum``: serve, manage users, check and print configuration.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratum import __version__
from stratum.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from stratum.service.users import UserDirectory


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--data-dir", type=Path, help="data directory (overrides the config)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stratum",
        description="Self-hosted S3-compatible object store with hot/warm/cold tiering.",
    )
    parser.add_argument("--version", action="version", version=f"stratum {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the S3 server")
    _common(serve)
    serve.add_argument("--listen", help="HOST:PORT to listen on (port 0: any free port)")

    user = sub.add_parser("user", help="manage users and their keys")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = user_sub.add_parser("add", help="add a user")
    add.add_argument("access_key")
    add.add_argument("secret_key")
    add.add_argument("--display-name", default="")
    add.add_argument(
        "--id",
        default="",
        metavar="CANONICAL_ID",
        help="owner id to adopt (64 hex), e.g. one recover-metadata reports lost; default: new",
    )
    _common(add)
    secret = user_sub.add_parser("secret", help="give a user a new secret key")
    secret.add_argument("access_key")
    secret.add_argument("secret_key")
    secret.add_argument(
        "--new-key",
        action="store_true",
        help="seal it with a new key file even though other users' secrets need a lost one",
    )
    _common(secret)
    lst = user_sub.add_parser("list", help="list users")
    lst.add_argument("--json", action="store_true")
    _common(lst)
    rm = user_sub.add_parser(
        "remove", help="remove a user (refused while it owns buckets, unless told what to do)"
    )
    rm.add_argument("access_key")
    heirs = rm.add_mutually_exclusive_group()
    heirs.add_argument(
        "--to", default="", metavar="ACCESS_KEY", help="give the user's buckets to this user"
    )
    heirs.add_argument(
        "--delete-buckets",
        action="store_true",
        help="delete the user's buckets and every object in them",
    )
    _common(rm)

    scrub = sub.add_parser("scrub", help="verify and repair stored data now")
    scrub.add_argument("target", nargs="?", metavar="BUCKET[/KEY]", help="only this bucket/key")
    scrub.add_argument("--now", action="store_true", help="run a pass now (the default action)")
    scrub.add_argument("--status", action="store_true", help="show progress and the last pass")
    _common(scrub)

    disk = sub.add_parser("disk", help="list or replace disks")
    disk_sub = disk.add_subparsers(dest="disk_command", metavar="ACTION", required=True)
    dlist = disk_sub.add_parser("list", help="disks with their state, capacity and errors")
    dlist.add_argument("--json", action="store_true")
    _common(dlist)
    replace = disk_sub.add_parser("replace", help="replace the disk at OLD by an empty NEW")
    replace.add_argument("old", type=Path)
    replace.add_argument("new", type=Path)
    _common(replace)

    snapshot = sub.add_parser(
        "snapshot",
        help="ZFS snapshot of the metadata (and with --data of the tiers' datasets) now",
    )
    snapshot.add_argument(
        "--data", action="store_true", help='also the datasets of tiers with backend = "zfs"'
    )
    _common(snapshot)

    recover = sub.add_parser(
        "recover-metadata",
        help="rebuild the metadata store from the disks (the server must be stopped)",
    )
    recover.add_argument("--dry-run", action="store_true", help="only report, write nothing")
    _common(recover)

    install = sub.add_parser("install", help="install this zipapp as a systemd service")
    install.add_argument("--pyz", type=Path, help="the zipapp to install (default: this one)")
    install.add_argument(
        "--root", type=Path, default=Path("/"), help="install under DIR (an image being built)"
    )
    install.add_argument(
        "--no-start", action="store_true", help="run no systemctl; do not enable the service"
    )

    explain = sub.add_parser("explain", help="why an object is in its tier, and what's next")
    explain.add_argument("target", metavar="BUCKET/KEY")
    explain.add_argument("--version-id", help="a version of the key other than the current one")
    _common(explain)

    tier = sub.add_parser("tier", help="tiering: decision log, passes, pins, simulation")
    tier_sub = tier.add_subparsers(dest="tier_command", metavar="ACTION", required=True)
    tlog = tier_sub.add_parser("log", help="the decision log, newest first")
    tlog.add_argument("--bucket")
    tlog.add_argument("--key")
    tlog.add_argument("--limit", type=int, default=50)
    tlog.add_argument("--json", action="store_true")
    _common(tlog)
    tclasses = tier_sub.add_parser(
        "classes", help="the learned policy's object classes and their re-read statistics"
    )
    tclasses.add_argument("--limit", type=int, default=100)
    tclasses.add_argument("--json", action="store_true")
    _common(tclasses)
    trun = tier_sub.add_parser("run", help="run a tiering pass now")
    _common(trun)
    tpin = tier_sub.add_parser("pin", help="pin a bucket to a tier (or 'auto')")
    tpin.add_argument("bucket")
    tpin.add_argument("tier", choices=["hot", "warm", "cold", "auto"])
    _common(tpin)
    tsim = tier_sub.add_parser("simulate", help="replay an access trace through the policy")
    tsim.add_argument("--trace", type=Path, required=True, help="CSV: time,op,bucket,key,size")
    tsim.add_argument("--json", action="store_true")
    tsim.add_argument(
        "--config", type=Path, help="TOML configuration file ([prices] and [tiering] values)"
    )
    tsim.add_argument(
        "--placements", type=Path, help="write every PUT, move and DELETE of each policy (CSV)"
    )

    replication = sub.add_parser("replication", help="replication to other sites")
    replication_sub = replication.add_subparsers(
        dest="replication_command", metavar="ACTION", required=True
    )
    rstatus = replication_sub.add_parser(
        "status", help="per target: queued versions and bytes, lag, last error"
    )
    rstatus.add_argument("--json", action="store_true")
    _common(rstatus)

    config = sub.add_parser("config", help="check or print configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file", type=Path)
    check.add_argument(
        "--targets",
        action="store_true",
        help="also reach every [replication.<name>] target: keys, buckets, their versioning",
    )
    config_sub.add_parser("default", help="print the fully commented default configuration")
    config_sub.add_parser("reference", help="print the configuration reference (Markdown)")
    return parser


def load(args: argparse.Namespace, **overrides: Any) -> Config:
    flat = {"storage.data_dir": getattr(args, "data_dir", None), **overrides}
    return load_config(getattr(args, "config", None), overrides=flat)


_CA_PATHS = ("SSL_CERT_FILE", "SSL_CERT_DIR")


def _import_aiohttp_without_ca_store() -> None:
    """Import aiohttp with OpenSSL's CA paths pointed nowhere, then restore the environment.

    aiohttp's client module builds two TLS client contexts when imported, loading the
    system's CA store into each: about 2 MiB in every server process, and a worker forked
    from the primary counts the primary's copy in its RSS as well. The server uses aiohttp's
    client only to forward admin calls to the primary over loopback HTTP, never TLS; the
    cold tier's boto3 builds its own contexts later, from the restored environment.
    """
    if "aiohttp" in sys.modules:
        return
    saved = {name: os.environ.get(name) for name in _CA_PATHS}
    nowhere = "/nonexistent/stratum-no-ca-store"
    os.environ.update(dict.fromkeys(_CA_PATHS, nowhere))
    try:
        import aiohttp  # noqa: F401
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            _import_aiohttp_without_ca_store()
            from stratum.cli.serve import serve

            config = load(args, **{"server.listen": args.listen})
            return serve(config, lambda: load(args, **{"server.listen": args.listen}))
        if args.command == "user":
            return _user(args)
        if args.command == "scrub":
            from stratum.cli import admin

            return admin.scrub(load(args), args.target, args.status)
        if args.command in ("explain", "tier"):
            from stratum.cli import tiering as tiering_cli

            return tiering_cli.run(args, load(args))
        if args.command == "replication":
            from stratum.cli import replication as replication_cli

            return replication_cli.run(args, load(args))
        if args.command == "disk":
            from stratum.cli import admin

            if args.disk_command == "list":
                return admin.disk_list(load(args), args.json)
            return admin.disk_replace(load(args), args.old, args.new)
        if args.command == "snapshot":
            return _snapshot(load(args), args.data)
        if args.command == "recover-metadata":
            from stratum.cli.recover import recover_metadata

            return recover_metadata(load(args), dry_run=args.dry_run)
        if args.command == "install":
            from stratum.cli.install import install

            return install(args.pyz, args.root, start=not args.no_start)
        if args.command == "config":
            from stratum.config.render import render_default_toml, render_markdown_reference

            if args.config_command == "check":
                checked = load_config(args.file)
                print(f"{args.file}: OK")
                if args.targets:
                    from stratum.cli import replication as replication_cli

                    return replication_cli.check_targets(checked)
                return 0
            if args.config_command == "reference":
                sys.stdout.write(render_markdown_reference())
                return 0
            sys.stdout.write(render_default_toml())
            return 0
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    parser.print_help()
    return 2


def _snapshot(config: Config, data: bool) -> int:
    from stratum.pool import PoolError
    from stratum.pool.snapshot import snapshot_now

    try:
        report = snapshot_now(config, data=data, when=time.time())
    except PoolError as exc:
        print(f"stratum: {exc}", file=sys.stderr)
        return 1
    for note in report.notes:
        print(f"not snapshotted: {note}")
    for name in report.created:
        print(f"created {name}")
    for name in report.destroyed:
        print(f"destroyed {name} (keeping {config.storage.snapshot_keep})")
    return 0


def _user(args: argparse.Namespace) -> int:
    from stratum.meta.store import MetaStore
    from stratum.service.user_secrets import UserSecrets
    from stratum.service.users import UserDirectory, load_root_credentials, root_in_use
    from stratum.util.keyfile import KeyFileError

    config = load(args)
    data_dir = config.storage.data_dir
    meta = MetaStore(data_dir / "meta")
    meta.open()
    try:
        own = load_root_credentials(data_dir, config.server.access_key, config.server.secret_key)
        users = UserDirectory(meta, root_in_use(data_dir, own), UserSecrets(data_dir))
        users.seal_plaintext()
        if args.user_command == "add":
            try:
                user = users.add(
                    args.access_key,
                    args.secret_key,
                    args.display_name,
                    time.time(),
                    canonical_id=args.id,
                )
            except (ValueError, KeyFileError) as exc:
                print(f"stratum: {exc}", file=sys.stderr)
                return 1
            print(f"added {user.access_key} ({user.display_name}) id={user.canonical_id}")
            return 0
        if args.user_command == "remove":
            return _remove_user(users, args)
        if args.user_command == "secret":
            try:
                users.set_secret(args.access_key, args.secret_key, new_key=args.new_key)
            except (ValueError, KeyFileError) as exc:
                print(f"stratum: {exc}", file=sys.stderr)
                return 1
            print(f"new secret for {args.access_key}")
            return 0
        rows = [
            {"access_key": u.access_key, "display_name": u.display_name, "id": u.canonical_id}
            for u in users.list()
        ]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for row in rows:
                print(f"{row['access_key']:<24} {row['display_name']:<20} {row['id']}")
        return 0
    finally:
        meta.close()


def _remove_user(users: UserDirectory, args: argparse.Namespace) -> int:
    from stratum.service.user_removal import NoSuchUser, UserOwnsBuckets, remove_user

    try:
        removal = remove_user(
            users, args.access_key, to=args.to, delete_buckets=args.delete_buckets
        )
    except UserOwnsBuckets as exc:
        print(f"stratum: {exc}", file=sys.stderr)
        return 2
    except (NoSuchUser, ValueError, RuntimeError) as exc:
        print(f"stratum: {exc.args[0]}", file=sys.stderr)
        return 1
    print(f"removed {removal.access_key}")
    if removal.buckets and removal.heir:
        print(
            f"{len(removal.buckets)} bucket(s) now owned by {removal.heir}: "
            f"{', '.join(removal.buckets)} ({removal.objects} object(s) took its id)"
        )
    elif removal.buckets:
        print(
            f"deleted {len(removal.buckets)} bucket(s) and {removal.objects} object(s): "
            f"{', '.join(removal.buckets)}; the server frees their data as it collects garbage"
        )
    return 0
