"""The team tracking server: a real `mlflow server` (started as `make server` starts it) on a
free port over a fresh PostgreSQL database, and real jobs sent to it.

PostgreSQL comes from scripts/ci-postgres.sh (`.ci/run` calls it). Where it does not answer the
tests are skipped, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from tests.dashboard_server import free_port, serving
from tests.helpers import all_runs, run_cli
from trainlab.serve import server

pytestmark = pytest.mark.slow

SWEEP_JOBS = 16
SWEEP_EPOCHS = 400  # 3 metrics x 400 steps per run: more than one 1000-metric request each
PER_RUN_KEYS = ("train/loss", "weight/0_0", "bias/0")
SERVER = (sys.executable, "-m", "trainlab.serve.server")


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A fresh PostgreSQL database for this module, dropped afterwards."""
    admin_uri = os.environ.get("TRAINLAB_TEST_PG_URI", server.DEFAULT_DB_URI)
    admin = create_engine(admin_uri, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as err:
        reason = f"PostgreSQL not reachable at {server.shown(admin_uri)} ({type(err).__name__}); run scripts/ci-postgres.sh"
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


@pytest.fixture(scope="module")
def server_url(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m trainlab.serve.server` (what `make server` runs) on a free port."""
    port = free_port()
    artifacts = tmp_path_factory.mktemp("server-artifacts")
    log = tmp_path_factory.mktemp("server-log") / "server.log"
    env = {**os.environ, "TRAINLAB_SERVER_DB_URI": database}
    command = [*SERVER, "--port", str(port), "--artifacts", str(artifacts), "--workers", "2"]
    # The first start creates the tables.
    with serving(command, env, port, log, timeout=180) as url:
        yield url


def status_with_host(url: str, host: str) -> int:
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_server_on_loopback_with_host_checks(server_url):
    assert status_with_host(server_url, "127.0.0.1") == 200
    # MLflow's security middleware is on: a foreign Host header (DNS rebinding) is refused.
    assert status_with_host(server_url, "attacker.example.com") == 403
    command = server.server_command(
        "127.0.0.1", 5001, "postgresql://u@h/d", server.paths.home(), None, 4
    )
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert "--disable-security-middleware" not in command and "--serve-artifacts" in command


def test_server_refuses_a_database_that_does_not_answer(tmp_path):
    done = subprocess.run(
        [*SERVER, "--port", str(free_port()), "--db-uri", "postgresql://u:s3cret@127.0.0.1:1/x"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TRAINLAB_HOME": str(tmp_path)},
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not answer" in lines[0], done.stderr
    assert "s3cret" not in done.stderr  # the password is masked


def test_parallel_sweep_through_the_server_loses_nothing(server_url, home, client, monkeypatch):
    monkeypatch.setenv("TRAINLAB_SERVER_URI", server_url)  # what tracking=server reads
    done = run_cli(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        "tracking=server",
        f"seed=range({SWEEP_JOBS})",
        f"max_epochs={SWEEP_EPOCHS}",
        "print_every=0",
        "experiment_name=team_sweep",
        home=home,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert f"Dashboard: {server_url}/#/experiments/" in done.stdout
    team = MlflowClient(tracking_uri=server_url)
    experiment = team.get_experiment_by_name("team_sweep")
    every = team.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in every if "mlflow.parentRunId" not in r.data.tags]
    runs = [r for r in every if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the sweep's parent run
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parents[0].info.run_id}
    assert sorted(int(r.data.params["seed"]) for r in runs) == list(range(SWEEP_JOBS))
    assert {r.info.status for r in runs} == {"FINISHED"}
    counted = 0
    for run in runs:
        for key in PER_RUN_KEYS:
            steps = [m.step for m in team.get_metric_history(run.info.run_id, key)]
            assert steps == list(range(SWEEP_EPOCHS)), (run.info.run_id, key)
            counted += len(steps)
        assert {"final/train_loss", "pred/before", "pred/after"} <= set(run.data.metrics)
        # artifacts went through the server into its own folder
        artifacts = {a.path for a in team.list_artifacts(run.info.run_id, "config")}
        assert artifacts == {"config/resolved.yaml", "config/overrides.yaml"}
    assert counted == SWEEP_JOBS * len(PER_RUN_KEYS) * SWEEP_EPOCHS
    assert all_runs(client) == []  # nothing went to the embedded store (client: sqlite in home)
