"""A bounded load on a tracking store: N jobs, 4 at a time through the joblib launcher, plus M
independent `trainlab-train` processes started alongside, each logging STEPS steps of metrics
and the default artifacts (config, checkpoint, plots, model). Loopback only.

Used by tests/test_server.py (the authenticated team server with S3 artifacts) and on its own:

    python -m benchmarks.team_load               # the embedded SQLite store in a temp folder
    python -m benchmarks.team_load --server URL  # a team server (MLFLOW_TRACKING_* for auth)

prints the metric points written per second of the load's wall time (whole processes: imports,
training, artifacts and the store). `--store-only` measures the store alone: one client sending
`log_batch` requests of 1000 metrics, what a job's recorder does.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TRAIN = str(Path(sys.executable).parent / "trainlab-train")
STEPS = 400
SWEEP_JOBS = 28
INDEPENDENT = 4


@dataclass(frozen=True)
class Load:
    seconds: float
    experiment: str
    sweep: subprocess.CompletedProcess
    independent: list[subprocess.CompletedProcess]


def run_load(
    home: Path,
    env: dict[str, str],
    experiment: str,
    tracking: tuple[str, ...] = ("tracking=server",),
    sweep_jobs: int = SWEEP_JOBS,
    independent: int = INDEPENDENT,
    steps: int = STEPS,
    timeout: float = 900,
) -> Load:
    """Run the load; return when every process has exited."""
    common = (*tracking, f"max_epochs={steps}", "print_every=0", f"experiment_name={experiment}")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | env
    env["TRAINLAB_HOME"] = str(home)

    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen([TRAIN, *args], cwd=home, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    began = time.monotonic()
    # A sweep's children draw no plots and log no model by default (docs/sweeps.md); the load is
    # of a job's default artifacts, so they are asked for.
    sweep = start("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", *common,
                  "tracking.plots=true", "tracking.log_model=true",
                  f"seed=range({sweep_jobs})")  # fmt: skip
    alone = [start(*common, f"seed={sweep_jobs + i}") for i in range(independent)]
    done = []
    for process in [sweep, *alone]:
        out, err = process.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return Load(time.monotonic() - began, experiment, done[0], done[1:])


def store_rate(uri: str, experiment: str, batches: int = 20) -> float:
    """Metric points per second that one MlflowClient gets into `uri` in 1000-metric batches."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run_id = client.create_run(exp_id).info.run_id
    keys = ("train/loss", "weight/0_0", "bias/0", "ols/gap")
    began = time.monotonic()
    for batch in range(batches):
        steps = range(batch * 250, batch * 250 + 250)
        client.log_batch(run_id, metrics=[Metric(k, 0.5, 0, s) for s in steps for k in keys])
    seconds = time.monotonic() - began
    client.set_terminated(run_id)
    return batches * 1000 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=None, help="a team server URL (default: SQLite)")
    parser.add_argument("--sweep-jobs", type=int, default=SWEEP_JOBS)
    parser.add_argument("--independent", type=int, default=INDEPENDENT)
    parser.add_argument("--experiment", default=f"load_{int(time.time())}")
    parser.add_argument("--store-only", action="store_true", help="log_batch alone, no jobs")
    args = parser.parse_args()
    from mlflow.tracking import MlflowClient

    home = Path(tempfile.mkdtemp(prefix="trainlab-load-"))
    experiment = args.experiment
    if args.server:
        tracking, uri = ("tracking=server",), args.server
        env = {"TRAINLAB_SERVER_URI": args.server}
    else:
        uri = f"sqlite:///{home / 'mlflow.db'}"
        tracking, env = ("tracking=sqlite",), {}
        MlflowClient(tracking_uri=uri).search_experiments()  # the tables, before the jobs
    if args.store_only:
        print(f"{store_rate(uri, experiment):.0f} points/s in 1000-metric log_batch into {uri}")
        return
    load = run_load(home, env, experiment, tracking, args.sweep_jobs, args.independent)
    failed = [p for p in [load.sweep, *load.independent] if p.returncode != 0]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    points = sum(
        len(client.get_metric_history(run.info.run_id, key))
        for run in runs
        for key in run.data.metrics
    )
    print(
        f"{len(runs)} runs ({len(failed)} commands failed), {points} metric points in "
        f"{load.seconds:.1f} s: {points / load.seconds:.0f} points/s into {uri}"
    )


if __name__ == "__main__":
    main()
