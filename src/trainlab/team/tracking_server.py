"""`make server`: the team's MLflow tracking server, with PostgreSQL as its backend store.

Runs and metrics go to PostgreSQL (TRAINLAB_SERVER_DB_URI, default: the database that
scripts/ci-postgres.sh creates); artifacts are uploaded through the server (--serve-artifacts)
into an absolute folder or an S3 bucket (TRAINLAB_SERVER_ARTIFACTS: a folder, default
<TRAINLAB_HOME>/server-artifacts, or s3://bucket/prefix with the server's own
MLFLOW_S3_ENDPOINT_URL and AWS_* credentials: jobs never need storage credentials).
`--auth` turns on MLflow's basic-auth app (team/auth.py: users and per-experiment permissions;
the admin password comes from the environment or a file, never a default).
It binds 127.0.0.1 and keeps MLflow's security middleware on (Host and CORS checks); to serve a
team, bind an interface (--host) and name the host names clients use (--allowed-hosts). Any
address but loopback needs --auth (or --insecure-no-auth, said out loud).
Jobs reach it with `tracking=server` (TRAINLAB_SERVER_URI, default http://127.0.0.1:5001).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from trainlab import paths
from trainlab.commands.mlflow_server import is_serving, server_command
from trainlab.team import auth

DEFAULT_DB_URI = "postgresql://trainlab:trainlab@127.0.0.1:5432/trainlab"
DEFAULT_PORT = 5001


def db_uri() -> str:
    return os.environ.get("TRAINLAB_SERVER_DB_URI") or DEFAULT_DB_URI


def artifact_root() -> str:
    """Where the server keeps artifacts: an s3:// URI, or an absolute folder."""
    where = os.environ.get("TRAINLAB_SERVER_ARTIFACTS")
    return where or str(paths.home() / "server-artifacts")


def artifacts_destination(where: str) -> str:
    """The --artifacts-destination URI: s3:// as given (checked), a folder made absolute."""
    if where.startswith("s3://"):
        check_bucket(where)
        return where
    folder = Path(where).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder.as_uri()


def check_bucket(uri: str) -> None:
    """Stop with one line when the S3 bucket is not reachable with the server's credentials."""
    import boto3  # only a server with S3 artifacts needs it
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = uri[len("s3://") :].split("/", 1)[0]
    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL")
    try:
        boto3.client("s3", endpoint_url=endpoint).head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError) as err:
        sys.exit(
            f"trainlab-server: error: artifacts {uri}: the bucket does not answer at "
            f"{endpoint or 'AWS'} ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "start the object store (make team) or set MLFLOW_S3_ENDPOINT_URL and AWS_* keys"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown(uri: str) -> str:
    """The URI with its password masked, for messages."""
    try:
        return make_url(uri).render_as_string(hide_password=True)
    except ArgumentError:
        return "<not a database URI>"


def check_database(uri: str) -> None:
    """Stop with one line when the backend store is not a PostgreSQL database that answers."""
    try:
        url = make_url(uri)
    except ArgumentError:
        sys.exit(f"trainlab-server: error: {shown(uri)}: expected postgresql://user:pw@host/db")
    if url.get_backend_name() != "postgresql":
        sys.exit(
            f"trainlab-server: error: TRAINLAB_SERVER_DB_URI={shown(uri)}: expected a "
            "postgresql:// URI (the embedded SQLite store is served by `make ui`)"
        )
    try:
        engine = create_engine(uri, connect_args={"connect_timeout": 5})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
        sys.exit(
            f"trainlab-server: error: PostgreSQL at {shown(uri)} does not answer ({reason}); "
            "run scripts/ci-postgres.sh or set TRAINLAB_SERVER_DB_URI"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", DEFAULT_PORT)))
    parser.add_argument("--db-uri", default=None, help="default: $TRAINLAB_SERVER_DB_URI")
    parser.add_argument(
        "--artifacts", default=None, help="folder or s3://bucket/prefix for artifacts"
    )
    parser.add_argument("--auth", action="store_true", help="MLflow's basic-auth app (users)")
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve a non-loopback address without authentication (anyone reaching it can "
        "read and delete every run)",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="auth config (default <TRAINLAB_HOME>/team)"
    )
    parser.add_argument(
        "--default-permission",
        default=None,
        help="with --auth, what a user may do on an experiment nobody granted them: READ "
        "(default, or $TRAINLAB_DEFAULT_PERMISSION) or NO_PERMISSIONS (private: a user sees only "
        "the experiments granted to them)",
    )
    parser.add_argument(
        "--allowed-hosts",
        default=None,
        help="Host headers to accept besides localhost and private IPs, e.g. mlflow.lab.org",
    )
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    if args.allowed_hosts and "*" in args.allowed_hosts.split(","):
        sys.exit("trainlab-server: error: --allowed-hosts='*' turns off the Host check; name hosts")
    if not args.auth and not is_loopback(args.host) and not args.insecure_no_auth:
        sys.exit(
            f"trainlab-server: error: --host {args.host} serves a network without "
            "authentication; expected --auth (or --insecure-no-auth to accept that anyone who "
            "reaches it can read and delete every run)"
        )
    url = f"http://{args.host}:{args.port}"
    if is_serving(args.host, args.port):
        print(f"A tracking server is already running at {url}")
        return
    store = args.db_uri or db_uri()
    # MLflow's job runner (GenAI scoring, trace archival; nothing trainlab uses) would start 8
    # more processes beside the server's workers.
    environment = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    # The server's own S3 client (boto's documented settings): an object store that does not
    # answer fails an artifact request in seconds; the job's client retries it (recorder/server.py).
    environment.setdefault("AWS_RETRY_MODE", "standard")
    environment.setdefault("AWS_MAX_ATTEMPTS", "2")
    if args.auth:
        state = (args.state_dir or paths.home() / "team").expanduser().resolve()
        try:
            default = auth.default_permission(args.default_permission)
            environment.update(auth.server_environment(state, store, default))
        except auth.AuthSetupError as err:
            sys.exit(f"trainlab-server: error: --auth: {err}")
    check_database(store)
    artifacts = artifacts_destination(args.artifacts or artifact_root())
    login = (
        f", basic-auth (admin user {auth.admin_user()!r}, default permission "
        f"{auth.default_permission(args.default_permission)})"
        if args.auth
        else ""
    )
    print(
        f"MLflow tracking server at {url} (store {shown(store)}, artifacts {artifacts}{login}); "
        f"jobs: trainlab-train tracking=server (TRAINLAB_SERVER_URI={url}); Ctrl-C stops it",
        flush=True,
    )
    options = ["--serve-artifacts", "--artifacts-destination", artifacts]
    if args.auth:
        options += ["--app-name", "basic-auth"]
    if args.allowed_hosts:
        options += ["--allowed-hosts", args.allowed_hosts]
    command = server_command(args.host, args.port, store, args.workers, *options)
    os.execve(command[0], command, environment)


if __name__ == "__main__":
    main()
