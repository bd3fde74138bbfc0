"""trainlab on a real SLURM cluster (scripts/ci-slurm.sh: one node, this machine): a job that
is requeued or reaches its time limit continues its own MLflow run, with no user action.

The runs train for good (10^7 epochs); each test stops its job once the requeued attempt has
resumed the run and committed a checkpoint of its own, so that it takes seconds, not minutes.
"""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import TRAIN, history, start_cli, until
from tests.slurm_cluster import slurm  # noqa: F401  (the fixture)
from tests.test_preemption import STEP_TAG

ARGS = (
    "max_epochs=10000000", "print_every=0", "checkpoint.every_n_steps=100",
    "tracking.plots=false", "tracking.log_model=false",
)  # fmt: skip


def scontrol(*args: str) -> str:
    done = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def job_field(job: str, name: str) -> str | None:
    """One field of `scontrol show job` (None once the job is gone)."""
    done = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True)
    for item in done.stdout.split():
        key, _, value = item.partition("=")
        if key == name:
            return value
    return None


def the_run(client, experiment: str, child: bool = False):
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id]) if found else []
    if child:
        runs = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) <= 1, [r.info.run_id for r in runs]  # a requeue never opens a new run
    return runs[0] if runs else None


def committed(client, experiment: str, child: bool = False):
    run = the_run(client, experiment, child)
    return run if run is not None and int(run.data.tags.get(STEP_TAG, "0")) > 0 else None


def requeued_fast(job: str) -> None:
    """Start a requeued job in 2 s rather than at its BeginTime (cred_expire, see
    scripts/ci-slurm.sh). Not `starttime=now`: a job that starts again within the second of its
    requeue is killed for good ("Job credential revoked": the new credential must be newer)."""
    until(f"job {job} pending again", lambda: job_field(job, "JobState") == "PENDING", 60)
    subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now+2"], capture_output=True)


def check_resumed(client, experiment: str, child: bool = False):
    """The run again RUNNING, resumed where its first attempt committed, with a new commit;
    its history contiguous from step 0."""
    run = until(
        "the requeued job resumed the run and committed",
        lambda: (
            (r := committed(client, experiment, child)) is not None
            and "trainlab.resumed_at_step" in r.data.tags
            and int(r.data.tags[STEP_TAG]) > int(r.data.tags["trainlab.resumed_at_step"])
            and r
        ),
    )
    steps = [s for s, _ in history(client, run.info.run_id)]
    assert steps == list(range(len(steps)))
    assert len(steps) >= int(run.data.tags[STEP_TAG])
    return run


@pytest.mark.slow
def test_the_cluster_runs_a_job(slurm):  # noqa: F811
    done = subprocess.run(
        ["srun", f"--partition={slurm}", "--time=1", "hostname"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


@pytest.mark.slow
def test_scontrol_requeue_continues_the_same_run(slurm, home, client):  # noqa: F811
    """`sbatch --requeue` of a plain `trainlab-train`, requeued by `scontrol requeue` while it
    trains: SIGTERM stops the first attempt with a checkpoint, the second resumes the run."""
    script = home / "job.sh"
    script.write_text(f"#!/bin/sh\nexec {TRAIN} {' '.join(ARGS)} experiment_name=requeue\n")
    env = {**os.environ, "TRAINLAB_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    job = subprocess.run(
        ["sbatch", "--parsable", "--requeue", f"--partition={slurm}", "--time=5",
         f"--output={home}/slurm-%j.out", "--open-mode=append", str(script)],
        capture_output=True, text=True, env=env, cwd=home, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        first = until("a first checkpoint", lambda: committed(client, "requeue"))
        assert first.data.tags["trainlab.cluster_job"] == f"slurm:{job}"
        scontrol("requeue", job)
        killed = until("the first attempt stopped", lambda: _ended(client, "requeue"))
        log = (home / f"slurm-{job}.out").read_text()
        assert "SIGTERM received: stopping after this step" in log, log
        assert int(killed.data.tags[STEP_TAG]) == len(history(client, killed.info.run_id))
        requeued_fast(job)
        run = check_resumed(client, "requeue")
        assert run.info.run_id == first.info.run_id
        assert job_field(job, "Restarts") == "1"
    finally:
        subprocess.run(["scancel", job], capture_output=True)


@pytest.mark.slow
def test_time_limit_signal_requeues_through_submitit(slurm, home, client):  # noqa: F811
    """A sweep job of the `slurm` launcher preset reaches its time limit: SLURM sends USR2
    signal_delay_s before it (--signal), the run stops with a checkpoint, submitit requeues the
    job and the requeued job continues the same run."""
    sweep = start_cli(
        home, "-m", "hydra/launcher=slurm", f"hydra.launcher.partition={slurm}",
        "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
        "hydra.launcher.timeout_min=10", *ARGS, "experiment_name=timelimit",
    )  # fmt: skip
    job = None
    try:
        first = until("a first checkpoint", lambda: committed(client, "timelimit", child=True))
        job = first.data.tags["trainlab.cluster_job"].removeprefix("slurm:")
        # Bring the time limit near: SLURM checks limits every 30 s and signals a job that ends
        # within signal_delay_s (120 s) of such a check; the limit leaves it a minute or more.
        elapsed = until("the job's run time", lambda: _seconds(job_field(job, "RunTime")))
        scontrol("update", f"jobid={job}", f"TimeLimit={math.ceil((elapsed + 60) / 60)}")
        killed = until(
            "the first attempt ended by the time-limit signal",
            lambda: _ended(client, "timelimit", child=True),
        )
        assert int(killed.data.tags[STEP_TAG]) == len(history(client, killed.info.run_id))
        requeued_fast(job)
        scontrol("update", f"jobid={job}", "TimeLimit=10")  # the second attempt trains on
        run = check_resumed(client, "timelimit", child=True)
        assert run.info.run_id == first.info.run_id
    finally:
        if job is not None:
            subprocess.run(["scancel", job], capture_output=True)
        sweep.terminate()
        _, err = sweep.communicate(timeout=120)
    logs = "".join(p.read_text() for p in sorted(Path(home, "multirun").rglob("*_log.*")))
    assert "SIGUSR2 received: stopping after this step" in logs, logs + err
    assert "this job is timed-out" in logs and "Requeued job" in logs, logs


def _ended(client, experiment: str, child: bool = False):
    """The run once its attempt has ended it KILLED (a signal, with a checkpoint)."""
    run = the_run(client, experiment, child)
    return run if run is not None and run.info.status == "KILLED" else None


def _seconds(run_time: str | None) -> int | None:
    """SLURM's [days-]hh:mm:ss as seconds."""
    if not run_time:
        return None
    days, _, clock = run_time.rpartition("-")
    hours, minutes, seconds = (int(p) for p in clock.split(":"))
    return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds
