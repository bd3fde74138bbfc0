"""An outage of a part of the team service mid-run: said within a minute in one line that names
the part (the object store behind the tracking server), and the printed resume command works once
the part is back: it finds the checkpoint kept on this machine. A real service (PostgreSQL,
SeaweedFS, MLflow with basic-auth: tests/team_service.py), the job as a real process."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import TRAIN


@pytest.fixture(scope="module")
def outage_team(tmp_path_factory) -> Iterator:
    """A service of its own: its object store is stopped and started again."""
    from tests.team_service import team_service

    with team_service(tmp_path_factory.mktemp("outage-team")) as team:
        team.add_user("alice", ("EDIT", "team_outage"))
        yield team


def job_env(team, home) -> dict[str, str]:
    # The user's environment, as the helpers' run_cli takes it: no HYDRA_FULL_ERROR that an
    # in-process test of the same session may have left, no MLflow settings of the test's.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MLFLOW_") and k != "HYDRA_FULL_ERROR"
    }
    return env | team.client_env("alice") | {"TRAINLAB_HOME": str(home)}


def start_job(team, home, *overrides: str) -> tuple[subprocess.Popen, MlflowClient]:
    """alice's training job on the team's server, and a client of hers (set in os.environ:
    the test's finally takes it out)."""
    command = [TRAIN, "tracking=server", "experiment_name=team_outage", "print_every=0",
               "tracking.plots=false", *overrides]  # fmt: skip
    job = subprocess.Popen(command, cwd=home, env=job_env(team, home), text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    os.environ.update(team.client_env("alice"))
    return job, MlflowClient(team.url)


@pytest.mark.slow
def test_an_object_store_outage_is_one_line_in_a_minute_and_resume_finds_the_checkpoint(
    outage_team, tmp_path
):
    team, home = outage_team, tmp_path
    env = job_env(team, home)
    # Only the final checkpoint (the case): no commit reached the store before.
    job, client = start_job(team, home, "max_epochs=12000", "checkpoint.every_seconds=null")
    try:
        deadline = time.monotonic() + 180
        while True:  # the run trains: stop the object store under it, before its checkpoint
            assert job.poll() is None and time.monotonic() < deadline, job.communicate()
            experiment = client.get_experiment_by_name("team_outage")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            if runs and len(client.get_metric_history(runs[0].info.run_id, "train/loss")) > 20:
                break
            time.sleep(0.2)
        team.objects.stop()
        stopped = time.monotonic()
        out, err = job.communicate(timeout=300)
        waited = time.monotonic() - stopped
        assert job.returncode == 2, out + err
        assert waited < 60, f"the outage was said after {waited:.0f} s"
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "object store" in lines[0], err
        (run,) = client.search_runs([experiment.experiment_id])
        run_id = run.info.run_id
        printed = f"Resume with: trainlab-train resume={run_id} tracking=server"
        assert printed in out, out
        team.objects.start(timeout=120)
        # The printed command as it is.
        resumed = subprocess.run([TRAIN, f"resume={run_id}", "tracking=server"], cwd=home, env=env,
                                 text=True, capture_output=True, timeout=300)  # fmt: skip
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert client.get_run(run_id).info.status == "FINISHED"
    finally:
        for key in team.client_env("alice"):
            os.environ.pop(key, None)
        if job.poll() is None:
            job.kill()


@pytest.mark.slow
def test_a_tracking_server_outage_is_one_line_naming_the_server(outage_team, tmp_path):
    team, home = outage_team, tmp_path
    job, client = start_job(team, home, "max_epochs=200000", "tracking.flush_every_seconds=0.1")
    try:
        deadline = time.monotonic() + 180
        known = {r.info.run_id for r in client.search_runs(
            [client.get_experiment_by_name("team_outage").experiment_id])}  # fmt: skip
        while True:  # the new run has points: stop the server under it, for good
            assert job.poll() is None and time.monotonic() < deadline, job.communicate()
            runs = client.search_runs([client.get_experiment_by_name("team_outage").experiment_id])
            new = [r for r in runs if r.info.run_id not in known]
            if new and client.get_metric_history(new[0].info.run_id, "train/loss"):
                break
            time.sleep(0.2)
        team.stop()
        stopped = time.monotonic()
        out, err = job.communicate(timeout=300)
        waited = time.monotonic() - stopped
        assert job.returncode != 0, out + err
        lines = [line for line in err.splitlines() if line.strip()]
        print(f"\nsaid after {waited:.0f} s: {lines}")
        assert len(lines) == 1 and "tracking server" in lines[0], err
        assert "Resume with" not in out or "tracking=server" in out, out
        assert waited < 75, f"the outage was said after {waited:.0f} s"
    finally:
        for key in team.client_env("alice"):
            os.environ.pop(key, None)
        if job.poll() is None:
            job.kill()
            job.communicate()
        team.start()
