"""`make team` / `make team-status` / `make team-stop`: the whole team service on this machine.

PostgreSQL (runs, metrics, users; `scripts/ci-postgres.sh`, which `make team` runs first), a
SeaweedFS object store (artifacts, bucket `mlflow`) and the authenticated MLflow server that
proxies artifacts into it (`trainlab.team.tracking_server --auth --artifacts s3://mlflow/artifacts`),
in the configuration the tests use. Everything it keeps lives in <TRAINLAB_HOME>/team/: the
server's and the object store's logs and pid files, the object store's data and keys, the auth
config and, when none is given, a generated admin password (mode 600).

Idempotent: a part that answers already is left running. `stop` ends the server and the object
store (PostgreSQL is a system service, shared with other work: it stays).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from trainlab import paths
from trainlab.commands.mlflow_server import is_serving
from trainlab.team import auth
from trainlab.team.object_store import ObjectStore, Ports, stop_process_group
from trainlab.team.tracking_server import DEFAULT_PORT, check_database, db_uri, shown

ARTIFACTS = "s3://mlflow/artifacts"
PROG = "trainlab-team"


def folder() -> Path:
    return paths.home() / "team"


def object_store(s3_port: int) -> ObjectStore:
    """SeaweedFS's other parts listen on the next three ports (and each + 10000 for gRPC)."""
    ports = Ports(s3=s3_port, master=s3_port + 1, volume=s3_port + 2, filer=s3_port + 3)
    return ObjectStore(folder() / "objectstore", ports)


def admin_password_file() -> tuple[dict[str, str], str]:
    """The admin password's source for the server: the caller's, else a generated file."""
    if os.environ.get(auth.ADMIN_ENV):
        return {}, f"${auth.ADMIN_ENV}"
    given = os.environ.get(auth.ADMIN_FILE_ENV)
    path = Path(given) if given else auth.default_admin_file()
    if not path.exists():
        auth.write_secret_file(path, auth.new_password() + "\n")
    return {auth.ADMIN_FILE_ENV: str(path)}, str(path)


def start(port: int, s3_port: int, workers: int) -> None:
    url = f"http://127.0.0.1:{port}"
    store = object_store(s3_port)
    check_database(db_uri())
    try:
        store.start()
    except RuntimeError as err:
        sys.exit(f"{PROG}: error: the object store: {str(err).splitlines()[0]}")
    secret_env, secret_where = admin_password_file()
    if not is_serving("127.0.0.1", port):
        log = (folder() / "server.log").open("ab")
        command = [sys.executable, "-m", "trainlab.team.tracking_server", "--auth", "--port", str(port),
                   "--artifacts", ARTIFACTS, "--state-dir", str(folder()),
                   "--workers", str(workers)]  # fmt: skip
        env = {**os.environ, **secret_env, **store.server_environment()}
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        (folder() / "server.pid").write_text(str(server.pid))
        deadline = time.monotonic() + 300
        while not is_serving("127.0.0.1", port):
            if server.poll() is not None or time.monotonic() > deadline:
                tail = (folder() / "server.log").read_text(errors="replace").strip()
                last = tail.splitlines()[-1] if tail else "no output"
                sys.exit(f"{PROG}: error: the MLflow server did not start: {last}")
            time.sleep(0.5)
    print(
        f"Team service up: MLflow {url} (basic-auth, admin {auth.admin_user()!r}, password in "
        f"{secret_where}), runs in {shown(db_uri())}, artifacts {ARTIFACTS} in SeaweedFS at "
        f"{store.endpoint} (data {store.folder}); users: make team-user; stop: make team-stop"
    )


def status(port: int, s3_port: int) -> int:
    server = is_serving("127.0.0.1", port)
    objects = object_store(s3_port).is_running()
    print(
        f"MLflow server http://127.0.0.1:{port}: {'up' if server else 'down'}; "
        f"object store {object_store(s3_port).endpoint}: {'up' if objects else 'down'}"
    )
    return 0 if server and objects else 3


def stop(s3_port: int) -> None:
    pid_file = folder() / "server.pid"
    stopped = []
    try:
        if stop_process_group(int(pid_file.read_text())):
            stopped.append("MLflow server")
    except (OSError, ValueError):
        pass
    pid_file.unlink(missing_ok=True)
    if object_store(s3_port).stop():
        stopped.append("object store")
    what = " and ".join(stopped) if stopped else "nothing was running"
    print(f"Team service stopped: {what}; PostgreSQL keeps running (a system service)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "status", "stop"))
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--s3-port", type=int, default=Ports().s3)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    folder().mkdir(parents=True, exist_ok=True)
    if args.action == "start":
        start(args.port, args.s3_port, args.workers)
    elif args.action == "status":
        sys.exit(status(args.port, args.s3_port))
    else:
        stop(args.s3_port)


if __name__ == "__main__":
    main()
