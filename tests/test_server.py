"""The team tracking server as `make team` runs it (tests/team_service.py: PostgreSQL, SeaweedFS,
`python -m trainlab.team.tracking_server --auth`), its checks, and a bounded load through it.

PostgreSQL comes from scripts/ci-postgres.sh (`.ci/run` calls it). Where it does not answer the
tests are skipped, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from base64 import b64encode

import boto3
import pytest
from sqlalchemy import create_engine, text

from benchmarks.team_load import STEPS, run_load
from tests.dashboard_server import free_port
from tests.helpers import all_runs, store
from trainlab.team import tracking_server

pytestmark = pytest.mark.slow

SERVER = (sys.executable, "-m", "trainlab.team.tracking_server")
PER_STEP_KEYS = ("train/loss", "weight/0_0", "bias/0")


def status_with_host(url: str, host: str, login: str) -> int:
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/experiments/search?max_results=1",
        headers={"Host": host, "Authorization": f"Basic {b64encode(login.encode()).decode()}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_server_on_loopback_with_host_checks(team):
    admin = f"admin:{team.admin_password}"
    assert status_with_host(team.url, "127.0.0.1", admin) == 200
    assert status_with_host(team.url, "127.0.0.1", "admin:wrong-password-here") == 401
    # MLflow's security middleware is on: a foreign Host header (DNS rebinding) is refused.
    assert status_with_host(team.url, "attacker.example.com", admin) == 403
    command = team.command()
    assert command[command.index("--port") - 1] == "--auth"
    assert "--host" not in command  # the default: 127.0.0.1
    assert tracking_server.is_loopback("127.0.0.1") and not tracking_server.is_loopback("0.0.0.0")


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


def test_load_through_the_authenticated_server_into_the_object_store(team, home):
    """8 jobs (4 through the joblib launcher, all at once, and 4 independent processes) of
    400 steps with the default artifacts: every point, every artifact, no run left RUNNING."""
    # A quarter of `python -m benchmarks.team_load`'s load: its 8 jobs at once, one wave of them.
    sweep_jobs, independent = 4, 4
    load = run_load(
        home, team.client_env("alice"), "team_load", sweep_jobs=sweep_jobs, independent=independent
    )
    jobs_run = sweep_jobs + independent
    for done in (load.sweep, *load.independent):
        assert done.returncode == 0, done.stderr[-3000:]
    engine = create_engine(team.database)
    with engine.connect() as db:
        experiment = db.execute(
            text("SELECT experiment_id FROM experiments WHERE name = 'team_load'")
        ).scalar_one()
        runs = dict(db.execute(text(
            "SELECT run_uuid, status FROM runs WHERE experiment_id = :e"), {"e": experiment}
        ).all())  # fmt: skip
        per_key = db.execute(text(
            "SELECT m.run_uuid, m.key, count(DISTINCT m.step), min(m.step), max(m.step), count(*) "
            "FROM metrics m JOIN runs r ON r.run_uuid = m.run_uuid WHERE r.experiment_id = :e "
            "GROUP BY m.run_uuid, m.key"), {"e": experiment}
        ).all()  # fmt: skip
    engine.dispose()
    assert len(runs) == jobs_run + 1 and set(runs.values()) == {"FINISHED"}  # + the parent
    # Per-step metrics; system/... are samples in time (one every 10 s), not per step, and the
    # parent's replicates/... are the mean and spread of the seeds it swept.
    stepped = [
        row for row in per_key if row[5] > 1 and not row[1].startswith(("system/", "replicates/"))
    ]
    jobs = {row[0] for row in stepped}
    assert len(jobs) == jobs_run
    for run_id, key, distinct, first, last, count in stepped:
        assert (distinct, first, last, count) == (STEPS, 0, STEPS - 1, STEPS), (run_id, key)
    for run_id in jobs:
        assert {k for r, k, *_ in stepped if r == run_id} >= set(PER_STEP_KEYS)
    points = sum(row[5] for row in per_key)
    # Every job's artifacts are objects in the bucket, uploaded through the server.
    access, secret = team.objects.keys()
    s3 = boto3.client("s3", endpoint_url=team.objects.endpoint, aws_access_key_id=access,
                      aws_secret_access_key=secret, region_name="us-east-1")  # fmt: skip
    prefix = f"artifacts/{experiment}/"
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow", Prefix=prefix)
    keys = [item["Key"][len(prefix) :] for page in pages for item in page.get("Contents", [])]
    for run_id in jobs:
        mine = {k.split("/artifacts/", 1)[1] for k in keys if k.startswith(f"{run_id}/")}
        assert {"checkpoints/last.ckpt", "config/resolved.yaml", "config/overrides.yaml",
                "plots/loss.png", "plots/fit.png", "plots/residuals.png",
                "plots/weights.png"} <= mine, run_id  # fmt: skip
    assert sum(k.startswith("models/") and k.endswith("/MLmodel") for k in keys) == jobs_run
    assert all_runs(store(home)) == []  # nothing went to the embedded store
    print(
        f"\nLoad: {jobs_run} jobs x {STEPS} steps, {points} metric points in {load.seconds:.1f} s: "
        f"{points / load.seconds:.0f} points/s through the authenticated server"
    )
