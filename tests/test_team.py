"""The team service for real: MLflow's basic-auth app on PostgreSQL, artifacts proxied into a
real S3-compatible object store (SeaweedFS), users made with `trainlab.team.users`, jobs that
sign in with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (tests/team_service.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode

import boto3
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import PREDICT, TRAIN, free_port, history, run_cli
from tests.team_service import bindable, fresh_database, random_weed_port
from trainlab.team.object_store import GRPC_OFFSET

pytestmark = pytest.mark.slow

SERVER = (sys.executable, "-m", "trainlab.team.tracking_server")


def as_user(team, user: str, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """A client of the team server signed in as `user` (this test process's environment)."""
    for key, value in team.client_env(user).items():
        monkeypatch.setenv(key, value)
    return MlflowClient(tracking_uri=team.url)


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.strip()]


def bucket_keys(team, prefix: str) -> set[str]:
    access, secret = team.objects.keys()
    s3 = boto3.client("s3", endpoint_url=team.objects.endpoint, aws_access_key_id=access,
                      aws_secret_access_key=secret, region_name="us-east-1")  # fmt: skip
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow", Prefix=prefix)
    return {item["Key"][len(prefix) :] for page in pages for item in page.get("Contents", [])}


def test_server_refuses_to_start_without_an_admin_password_or_on_a_network_without_auth(
    tmp_path,
):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINLAB_"))}
    env["TRAINLAB_HOME"] = str(tmp_path)

    def start(*args: str, **extra: str) -> subprocess.CompletedProcess:
        command = [*SERVER, "--port", str(free_port()), "--state-dir", str(tmp_path), *args]
        return subprocess.run(command, env={**env, **extra}, capture_output=True, text=True,
                              timeout=60)  # fmt: skip

    done = start("--auth")
    assert done.returncode != 0 and error_lines(done) == [
        "trainlab-server: error: --auth: no admin password: set MLFLOW_AUTH_ADMIN_PASSWORD or "
        "TRAINLAB_ADMIN_PASSWORD_FILE=<a file of mode 600>; there is no default"
    ]
    secret = tmp_path / "admin-password"
    secret.write_text("a-long-enough-password\n")
    secret.chmod(0o644)  # readable by everyone: refused, and the password is not shown
    done = start("--auth", TRAINLAB_ADMIN_PASSWORD_FILE=str(secret))
    assert done.returncode != 0 and len(error_lines(done)) == 1
    assert "expected mode 600" in done.stderr and "a-long-enough" not in done.stderr
    # Any address but loopback needs authentication, unless forced.
    done = start("--host", "0.0.0.0")
    assert done.returncode != 0 and len(error_lines(done)) == 1
    assert "serves a network without authentication; expected --auth" in done.stderr


def test_missing_wrong_and_read_only_credentials_fail_in_seconds_with_one_line(
    team, home, monkeypatch
):
    common = ("tracking=server", "experiment_name=team_runs", "max_epochs=3", "print_every=0")
    started = time.monotonic()
    done = run_cli(*common, home=home, extra_env=team.client_env(None))
    assert done.returncode == 2 and len(error_lines(done)) == 1, done.stderr
    assert (
        "the server requires a login (HTTP 401); expected MLFLOW_TRACKING_USERNAME" in done.stderr
    )
    wrong = {
        **team.client_env("alice"),
        "MLFLOW_TRACKING_PASSWORD": "not-" + team.passwords["alice"],
    }
    done = run_cli(*common, home=home, extra_env=wrong)
    assert done.returncode == 2 and len(error_lines(done)) == 1, done.stderr
    assert "the server refused user 'alice' (HTTP 401)" in done.stderr
    assert time.monotonic() - started < 20  # both before torch is imported
    assert team.passwords["alice"] not in done.stdout + done.stderr

    done = run_cli(*common, home=home, extra_env=team.client_env("reader"))
    assert done.returncode == 2 and len(error_lines(done)) == 1, done.stderr
    assert (
        "user 'reader' may not create runs in experiment 'team_runs' (PERMISSION_DENIED); "
        "expected EDIT on it" in done.stderr
    )
    admin = as_user(team, "admin", monkeypatch)
    experiment = admin.get_experiment_by_name("team_runs")
    assert admin.search_runs([experiment.experiment_id], "tags.`mlflow.user` = 'reader'") == []


def test_a_run_lives_in_the_object_store_and_works_from_there(team, home, monkeypatch, tmp_path):
    """Plots, checkpoint, model, `trainlab-predict models:/...`, resume from the checkpoint
    artifact and the dashboard, all through the authenticated server and S3; no secret leaks."""
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    alice = team.client_env("alice")
    common = ("tracking=server", "experiment_name=team_runs", "print_every=0")
    done = run_cli(*common, "max_steps=20", "tracking.register=team_model", home=home,
                   extra_env=alice)  # fmt: skip
    assert done.returncode == 0, done.stderr
    outputs = [done.stdout + done.stderr]
    client = as_user(team, "alice", monkeypatch)
    experiment = client.get_experiment_by_name("team_runs")
    (run,) = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'")
    run_id = run.info.run_id
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied: no S3 keys needed
    stored = bucket_keys(team, f"artifacts/{experiment.experiment_id}/{run_id}/artifacts/")
    assert {"checkpoints/last.ckpt", "config/resolved.yaml", "plots/loss.png",
            "plots/fit.png"} <= stored  # fmt: skip
    assert not (home / "server-artifacts").exists()

    # The registered model, loaded through the server from the object store.
    done = subprocess.run([PREDICT, "models:/team_model@current", "5", "--tracking-uri", team.url],
                          env={**os.environ, **alice}, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == 1 and float(done.stdout) > 0  # the prediction for 5
    outputs.append(done.stdout + done.stderr)

    # Resumed from its checkpoint artifact (downloaded through the server) to step 40.
    resume = (f"resume={run_id}", "tracking=server", "max_steps=40")
    done = run_cli(*resume, home=home, extra_env={**alice, "TRAINLAB_SERVER_URI": team.url})
    assert done.returncode == 0, done.stderr
    outputs.append(done.stdout + done.stderr)
    assert f"Resuming run {run_id} at step 20" in done.stdout
    assert [step for step, _ in history(client, run_id)] == list(range(40))
    assert client.get_run(run_id).info.status == "FINISHED"

    # The dashboard: its page and a plot through the artifact proxy, for a signed-in user only.
    pair = b64encode(f"alice:{team.passwords['alice']}".encode()).decode()
    plot = f"{team.url}/get-artifact?path=plots/loss.png&run_uuid={run_id}"
    for url in (f"{team.url}/", plot):
        with urllib.request.urlopen(
            urllib.request.Request(url, headers={"Authorization": f"Basic {pair}"}), timeout=30
        ) as page:
            assert page.status == 200
            body = page.read()
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(plot, timeout=30)
    assert refused.value.code == 401

    assert_no_secret_anywhere(team, client, experiment.experiment_id, home, tmp_path, outputs)


def assert_no_secret_anywhere(team, client, experiment_id, home, tmp_path, outputs) -> None:
    """Params, tags, every artifact, the database, the object store's files, the job folders,
    the server's log and what the commands printed: no password and no storage key."""
    secrets = team.secrets()
    texts = [*outputs, team.log.read_text(errors="replace")]
    for run in client.search_runs([experiment_id]):
        texts += [*run.data.params.values(), *run.data.tags.values()]
        folder = tmp_path / "download" / run.info.run_id
        client.download_artifacts(run.info.run_id, "", str(folder))
        texts += [p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file()]
    for root in (home, team.objects.folder / "data"):
        texts += [p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file()]
    if shutil.which("pg_dump"):
        dump = subprocess.run(["pg_dump", "--dbname", team.database], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert dump.returncode == 0, dump.stderr
        texts.append(dump.stdout)
    for secret in secrets:
        assert not any(secret in text for text in texts)


def test_a_server_restart_in_the_middle_of_a_run_loses_nothing(team, home, monkeypatch):
    """The recorder's MLflow client retries a request that finds no server (MLflow's own
    MLFLOW_HTTP_REQUEST_* settings: 7 retries, about 4 minutes by default; backoff factor 1
    here, to keep the test short): the rows it holds reach the restarted server."""
    steps = 2000
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= team.client_env("alice") | {"TRAINLAB_HOME": str(home)}
    env["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    command = [TRAIN, "tracking=server", "experiment_name=team_restart", f"max_epochs={steps}",
               "print_every=0", "tracking.flush_every_seconds=0.1"]  # fmt: skip
    job = subprocess.Popen(command, cwd=home, env=env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)  # fmt: skip
    client = as_user(team, "alice", monkeypatch)
    deadline = time.monotonic() + 180
    while True:  # until the run exists and has its first points on the server
        assert job.poll() is None and time.monotonic() < deadline, "no run or no points"
        experiment = client.get_experiment_by_name("team_restart")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and history(client, runs[0].info.run_id):
            break
        time.sleep(0.2)
    run_id = runs[0].info.run_id
    team.stop()
    down = time.monotonic()
    time.sleep(2)
    team.start()
    print(f"\nserver down for {time.monotonic() - down:.1f} s in the middle of run {run_id}")
    _, err = job.communicate(timeout=400)
    assert job.returncode == 0, err
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    for key in ("train/loss", "weight/0_0", "bias/0"):
        assert [step for step, _ in history(client, run_id, key)] == list(range(steps)), key


def test_make_team_starts_reports_and_stops_the_whole_service(tmp_path):
    """`make team` / `team-status` / `team-stop` (trainlab.team.service), over a fresh database."""
    s3 = next(p for p in iter(random_weed_port, None)
              if all(bindable(q) and bindable(q + GRPC_OFFSET) for q in range(p, p + 4)))  # fmt: skip
    port = free_port()
    with fresh_database() as database:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAINLAB_"))}
        env |= {"TRAINLAB_HOME": str(tmp_path), "TRAINLAB_SERVER_DB_URI": database}

        def team(action: str) -> subprocess.CompletedProcess:
            command = [sys.executable, "-m", "trainlab.team.service", action, "--port", str(port),
                       "--s3-port", str(s3), "--workers", "1"]  # fmt: skip
            return subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)

        try:
            first = team("start")
            assert first.returncode == 0, first.stderr
            assert first.stdout.startswith(f"Team service up: MLflow http://127.0.0.1:{port}")
            again = team("start")  # idempotent: everything answers already
            assert again.returncode == 0 and again.stdout == first.stdout
            status = team("status")
            assert status.returncode == 0 and status.stdout.count(": up") == 2
            secret = tmp_path / "team" / "admin-password"
            assert secret.stat().st_mode & 0o777 == 0o600  # generated: no built-in password
            password = secret.read_text().strip()
            assert password not in first.stdout + first.stderr
            login = b64encode(f"admin:{password}".encode()).decode()
            probe = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1",
                headers={"Authorization": f"Basic {login}"},
            )
            with urllib.request.urlopen(probe, timeout=30) as answer:
                assert answer.status == 200
        finally:
            stopped = team("stop")
        assert stopped.stdout.startswith("Team service stopped: MLflow server and object store")
        status = team("status")
        assert status.returncode == 3 and status.stdout.count(": down") == 2
