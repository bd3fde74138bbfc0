"""`make server`: the team's MLflow tracking server, with PostgreSQL as its backend store.

Runs and metrics go to PostgreSQL (TRAINLAB_SERVER_DB_URI, default: the database that
scripts/ci-postgres.sh creates); artifacts are uploaded through the server (--serve-artifacts)
into an absolute folder (TRAINLAB_SERVER_ARTIFACTS, default <TRAINLAB_HOME>/server-artifacts).
It binds 127.0.0.1 and keeps MLflow's security middleware on (Host and CORS checks); to serve a
team, bind an interface (--host) and name the host names clients use (--allowed-hosts).
Jobs reach it with `tracking=server` (TRAINLAB_SERVER_URI, default http://127.0.0.1:5001).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from trainlab import paths
from trainlab.serve.mlflow_server import is_serving, server_command

DEFAULT_DB_URI = "postgresql://trainlab:trainlab@127.0.0.1:5432/trainlab"
DEFAULT_PORT = 5001


def db_uri() -> str:
    return os.environ.get("TRAINLAB_SERVER_DB_URI") or DEFAULT_DB_URI


def artifact_root() -> Path:
    folder = os.environ.get("TRAINLAB_SERVER_ARTIFACTS")
    return Path(folder).expanduser().resolve() if folder else paths.home() / "server-artifacts"


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
    parser.add_argument("--artifacts", type=Path, default=None, help="folder for artifacts")
    parser.add_argument(
        "--allowed-hosts",
        default=None,
        help="Host headers to accept besides localhost and private IPs, e.g. mlflow.lab.org",
    )
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    if args.allowed_hosts and "*" in args.allowed_hosts.split(","):
        sys.exit("trainlab-server: error: --allowed-hosts='*' turns off the Host check; name hosts")
    url = f"http://{args.host}:{args.port}"
    if is_serving(args.host, args.port):
        print(f"A tracking server is already running at {url}")
        return
    store = args.db_uri or db_uri()
    check_database(store)
    artifacts = (args.artifacts or artifact_root()).expanduser().resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    print(
        f"MLflow tracking server at {url} (store {shown(store)}, artifacts {artifacts}); "
        f"jobs: trainlab-train tracking=server (TRAINLAB_SERVER_URI={url}); Ctrl-C stops it",
        flush=True,
    )
    options = ["--serve-artifacts", "--artifacts-destination", artifacts.as_uri()]
    if args.allowed_hosts:
        options += ["--allowed-hosts", args.allowed_hosts]
    command = server_command(args.host, args.port, store, args.workers, *options)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
