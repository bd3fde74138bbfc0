"""A bounded load on a tracking store: N jobs, 4 at a time through the joblib launcher, plus M
independent `trainlab-train` processes started alongside, each logging STEPS steps of metrics
and the default artifacts (config, checkpoint, plots, model). Loopback only.

Used by tests/test_server.py (the authenticated team server with S3 artifacts) and on its own:

    python -m benchmarks.team_load               # the embedded SQLite store in a temp folder
    python -m benchmarks.team_load --server URL  # a team server (MLFLOW_TRACKING_* for auth)

prints the metric points written per second of the load's wall time.
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
    sweep = start("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", *common,
                  f"seed=range({sweep_jobs})")  # fmt: skip
    alone = [start(*common, f"seed={sweep_jobs + i}") for i in range(independent)]
    done = []
    for process in [sweep, *alone]:
        out, err = process.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return Load(time.monotonic() - began, experiment, done[0], done[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=None, help="a team server URL (default: SQLite)")
    parser.add_argument("--sweep-jobs", type=int, default=SWEEP_JOBS)
    parser.add_argument("--independent", type=int, default=INDEPENDENT)
    parser.add_argument("--experiment", default=f"load_{int(time.time())}")
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
