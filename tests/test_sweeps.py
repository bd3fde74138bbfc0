"""Sweeps end to end: `trainlab-train -m` subprocesses (serial, joblib, submitit_local, Optuna)
against a temporary SQLite store, read back with MLflow's client: one parent run per sweep, every
job a child run, the summary on the parent."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from tests.helpers import all_runs, run_cli
from trainlab.config.schema import register_configs
from trainlab.paths import CONFIG_DIR
from trainlab.sweeps.callback import check_jobs
from trainlab.sweeps.state import sweep_jobs

pytestmark = pytest.mark.slow  # end to end: real subprocesses and servers

QUIET = ("print_every=0",)


def store(home: Path) -> MlflowClient:
    """The sweep's store, opened once the sweep has run."""
    assert (home / "mlflow.db").is_file()
    return MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")


def read_sweep(client, n_children: int):
    """The sweep's parent and its children (sorted by job number), checked for linkage."""
    runs = all_runs(client)
    parents = [r for r in runs if r.data.tags.get("trainlab.sweep") == "parent"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == n_children == len(runs) - 1
    assert all(c.info.experiment_id == parent.info.experiment_id for c in children)
    children.sort(key=lambda c: int(c.data.tags["trainlab.sweep.job"]))
    assert [int(c.data.tags["trainlab.sweep.job"]) for c in children] == list(range(n_children))
    return parent, children


def objective(run) -> float:
    metrics = run.data.metrics
    return metrics.get("final/val_loss", metrics.get("final/train_loss", math.nan))


def check_summary(client, parent, children, steps: int | None, swept: list[str]) -> list[dict]:
    """Every child's full train/loss history, the summary table and plot, the best child named."""
    parent_id = parent.info.run_id
    for child in children:
        if child.info.status == "FINISHED" and steps is not None:
            history = client.get_metric_history(child.info.run_id, "train/loss")
            assert [m.step for m in history] == list(range(steps))
    paths = {a.path for a in client.list_artifacts(parent_id, "summary")}
    assert paths == {"summary/children.csv", "summary/children.md", "summary/losses.png"}
    png = Path(client.download_artifacts(parent_id, "summary/losses.png")).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    text = Path(client.download_artifacts(parent_id, "summary/children.csv")).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["run_id"] for r in rows] == [c.info.run_id for c in children]
    assert [r["status"] for r in rows] == [c.info.status for c in children]
    for row, child in zip(rows, children, strict=True):
        assert float(row["final_loss"]) == pytest.approx(objective(child), nan_ok=True)
        given = Path(client.download_artifacts(child.info.run_id, "config/overrides.yaml"))
        # The swept values in the table are the ones Hydra gave that job.
        assert all(f"{k}={row[k]}" in yaml.safe_load(given.read_text())["overrides"] for k in swept)
    markdown = Path(client.download_artifacts(parent_id, "summary/children.md")).read_text()
    assert all(c.info.run_id in markdown for c in children)
    parent = client.get_run(parent_id)
    finished = [c for c in children if c.info.status == "FINISHED"]
    best = min(finished, key=objective)
    assert parent.data.tags["trainlab.sweep.best_run_id"] == best.info.run_id
    assert parent.data.metrics["best/final_loss"] == pytest.approx(objective(best))
    assert parent.data.metrics["sweep/children"] == len(children)
    best_row = next(r for r in rows if r["run_id"] == best.info.run_id)
    for key in swept:
        assert parent.data.tags[f"best.{key}"] == best_row[key]
    return rows


def test_serial_grid_sweep_is_one_parent_with_linked_children(home):
    done = run_cli(
        "-m", "experiment=lr_sweep", "optimizer.lr=0.003,0.01,0.03", "max_epochs=20", home=home
    )
    assert done.returncode == 0, done.stderr
    client = store(home)
    parent, children = read_sweep(client, 3)
    assert parent.info.status == "FINISHED" and parent.info.experiment_id == (
        client.get_experiment_by_name("lr_sweep").experiment_id
    )
    assert all(c.info.status == "FINISHED" for c in children)
    assert [c.info.run_name for c in children] == [
        "optimizer.lr=0.003",
        "optimizer.lr=0.01",
        "optimizer.lr=0.03",
    ]
    assert "optimizer.lr=0.003,0.01,0.03" in parent.data.params["sweep.overrides"]
    assert parent.data.params["sweep.params.optimizer.lr"] == "0.001,0.003,0.01,0.03,0.06"
    sweep_dir = Path(parent.data.tags["trainlab.sweep.dir"])
    assert sweep_dir.parent.parent == home / "multirun"
    assert yaml.safe_load((sweep_dir / "mlflow_sweep.yaml").read_text())["parent_run_id"] == (
        parent.info.run_id
    )
    rows = check_summary(client, parent, children, steps=20, swept=["optimizer.lr"])
    assert [r["optimizer.lr"] for r in rows] == ["0.003", "0.01", "0.03"]
    assert "Best: job 2 (optimizer.lr=0.03)" in done.stdout  # the fastest of three stable rates


def test_joblib_sweep_on_a_fresh_store(fresh_home):
    home = fresh_home
    assert not (home / "mlflow.db").exists()  # the store is created once, before the jobs
    lrs = "0.003,0.03"
    done = run_cli(
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"optimizer.lr={lrs}",
        "max_epochs=20", *QUIET, home=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    client = store(home)
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr
    parent, children = read_sweep(client, 2)
    assert parent.info.status == "FINISHED"
    assert all(c.info.status == "FINISHED" for c in children)
    for child in children:  # every metric of every job arrived
        assert {"final/train_loss", "pred/before", "pred/after"} <= set(child.data.metrics)
        for key in ("weight/0_0", "bias/0"):
            history = client.get_metric_history(child.info.run_id, key)
            assert [m.step for m in history] == list(range(20))
    check_summary(client, parent, children, steps=20, swept=["optimizer.lr"])


def test_parallel_launcher_forks_workers_that_record_every_job(fresh_home):
    """`hydra/launcher=parallel`: 2 jobs at once, each in a process forked for it, every metric
    of every job in the store, a diverging job FAILED in the summary like a serial sweep's."""
    home = fresh_home
    done = run_cli(
        "-m", "hydra/launcher=parallel", "optimizer.lr=0.001,0.01,0.03,100", "max_epochs=20",
        *QUIET, home=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Launching 4 jobs, 2 at once in forked processes" in done.stdout + done.stderr
    assert "1 of 4 jobs failed" in done.stderr
    client = store(home)
    parent, children = read_sweep(client, 4)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["trainlab.sweep.launcher"].endswith("fork_launcher.ForkLauncher")
    statuses = [c.info.status for c in children]
    assert statuses == ["FINISHED", "FINISHED", "FINISHED", "FAILED"]
    assert len({c.data.tags["trainlab.pid"] for c in children}) == 4  # a fresh fork each
    for child in children[:3]:
        for key in ("train/loss", "weight/0_0", "bias/0"):
            history = client.get_metric_history(child.info.run_id, key)
            assert [m.step for m in history] == list(range(20))


def test_submitit_local_sweep(home):
    done = run_cli(
        "-m", "hydra/launcher=submitit_local", "optimizer=sgd,adam", "optimizer.lr=0.05",
        "max_epochs=20", *QUIET, home=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    client = store(home)
    parent, children = read_sweep(client, 2)
    assert parent.data.tags["trainlab.sweep.launcher"].endswith("submitit_launcher.LocalLauncher")
    assert (Path(parent.data.tags["trainlab.sweep.dir"]) / ".submitit").is_dir()
    assert [c.data.params["optimizer._target_"] for c in children] == [
        "torch.optim.SGD",
        "torch.optim.Adam",
    ]
    check_summary(client, parent, children, steps=20, swept=["optimizer"])


# Two ways a job fails after every check passed: its loss diverges (its run exists), or its data
# cannot be used (it fails before its run would exist; it gets one anyway, for the summary).
DIVERGES = ("data=synthetic", "data.n_samples=64", "max_epochs=30")


def test_failed_child_is_listed_and_the_sweep_goes_on(home):
    done = run_cli("-m", *DIVERGES, "optimizer.lr=0.01,10", *QUIET, home=home)
    assert done.returncode == 0, done.stderr
    client = store(home)
    errors = [line for line in done.stderr.splitlines() if line.startswith("trainlab-train:")]
    assert (
        errors[0].startswith("trainlab-train: error: job 1 (") and "train/loss became" in errors[0]
    )
    assert errors[1] == "trainlab-train: warning: 1 of 2 jobs failed: 1"
    assert "Traceback" not in done.stderr
    parent, children = read_sweep(client, 2)
    assert [c.info.status for c in children] == ["FINISHED", "FAILED"]
    assert "train/loss became" in children[1].data.tags["trainlab.error"]
    trace = Path(client.download_artifacts(children[1].info.run_id, "error.txt")).read_text()
    assert "Traceback" in trace and "DivergedError" in trace
    assert parent.info.status == "FINISHED"
    rows = check_summary(client, parent, children, steps=None, swept=["optimizer.lr"])
    assert rows[1]["status"] == "FAILED" and "train/loss became" in rows[1]["error"]
    assert client.get_run(parent.info.run_id).data.metrics["sweep/failed"] == 1


def test_a_job_that_fails_before_its_run_exists_is_listed(home):
    (home / "good.csv").write_text("x,y\n1,2\n2,4\n3,6\n")
    (home / "holes.csv").write_text("x,y\n1,2\n,4\n3,6\n")
    paths = f"{home / 'good.csv'},{home / 'holes.csv'}"
    done = run_cli("-m", "data=csv", "data.target=y", f"data.path={paths}", *QUIET, home=home)
    assert done.returncode == 0, done.stderr
    client = store(home)
    parent, children = read_sweep(client, 2)
    assert [c.info.status for c in children] == ["FINISHED", "FAILED"]
    assert "contain NaN or inf (first at row 1)" in children[1].data.tags["trainlab.error"]
    assert children[1].data.tags["trainlab.sweep.job"] == "1"
    rows = check_summary(client, parent, children, steps=None, swept=["data.path"])
    assert rows[1]["status"] == "FAILED"


def test_stop_on_failure_skips_the_remaining_jobs(home):
    done = run_cli(
        "-m", "sweep.stop_on_failure=true", *DIVERGES, "optimizer.lr=10,0.01", *QUIET, home=home
    )
    assert done.returncode == 2
    client = store(home)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("trainlab-train: error: the sweep stopped after job 0 (")
    assert "job 1 skipped" in done.stdout
    runs = all_runs(client)
    parent = next(r for r in runs if r.data.tags.get("trainlab.sweep") == "parent")
    assert parent.info.status == "FAILED" and "trainlab.sweep.stopped" in parent.data.tags
    children = [r for r in runs if r.info.run_id != parent.info.run_id]
    assert [c.info.status for c in children] == ["FAILED"]


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        ("optimizer.lr=0.1,-1", "optimizer.lr=-1.0 is not allowed: expected a learning rate > 0"),
        ("optimizer=sgd,adma", "optimizer=adma: no such option; expected one of adam, adamw"),
        ("optimizer.lrr=0.1,0.2", "Could not override 'optimizer.lrr'"),
    ],
)
def test_bad_sweep_override_fails_before_any_job(fresh_home, sweep, expected):
    home = fresh_home
    done = run_cli("-m", sweep, "max_epochs=5", home=home)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("trainlab-train: error: sweep job `") and expected in lines[0]
    assert "Launching" not in done.stdout + done.stderr
    assert not (home / "mlflow.db").exists()  # no parent, no child: nothing started
    assert not (home / "multirun").exists()


def test_launcher_failure_never_leaves_the_parent_running(home):
    # submitit cannot submit: outside a Slurm cluster it finds no srun; inside one (CI runs a
    # real one) the partition does not exist. The sweep stops after its parent exists.
    done = run_cli(
        "-m", "hydra/launcher=slurm", "hydra.launcher.partition=no_such_partition",
        "optimizer.lr=0.01,0.02", home=home,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("trainlab-train: error: ")
    assert "slurm" in lines[-1].lower() or "partition" in lines[-1]
    runs = all_runs(store(home))
    assert [r.info.status for r in runs] == ["FAILED"]  # the parent, and no child
    error = runs[0].data.tags["trainlab.error"]
    assert "slurm" in error.lower() or "partition" in error


@pytest.mark.parametrize(
    ("launcher", "target", "key", "value"),
    [
        ("slurm", "submitit_launcher.SlurmLauncher", "array_parallelism", 32),
        ("slurm", "submitit_launcher.SlurmLauncher", "max_num_timeout", 3),  # requeued, resumed
        ("parallel", "fork_launcher.ForkLauncher", "n_jobs", 2),
    ],
)
def test_launcher_presets_compose(launcher, target, key, value):
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    assert cfg.hydra.launcher[key] == value
    assert cfg.hydra.callbacks.mlflow_sweep._target_ == "trainlab.sweeps.callback.SweepCallback"


@pytest.mark.parametrize(
    ("preset", "n_jobs"),
    [("lr_sweep", 5), ("optimizer_shootout", 8), ("loss_shootout", 4), ("optuna_lr", 6)],
)
def test_sweep_presets_pass_every_check(preset, n_jobs):
    """Each preset's jobs compose and pass the value checks (Optuna's interval: both ends)."""
    if preset == "optuna_lr":
        register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [f"experiment={preset}"], return_hydra_config=True)
        assert len(sweep_jobs(cfg)) == n_jobs
        check_jobs(cfg)  # raises ConfigError naming the job otherwise


def test_sweep_jobs_expands_like_the_basic_sweeper():
    config = OmegaConf.create(
        {
            "hydra": {
                "sweeper": {"params": {"optimizer": "sgd,adam", "optimizer.lr": "0.1,0.2"}},
                "overrides": {"task": ["optimizer.lr=tag(log, interval(0.001, 0.1))", "seed=3"]},
            }
        }
    )
    jobs = sweep_jobs(config)
    # The command line wins over hydra.sweeper.params; an interval is checked at both ends.
    assert jobs == [
        ["optimizer=sgd", "optimizer.lr=0.001", "seed=3"],
        ["optimizer=sgd", "optimizer.lr=0.1", "seed=3"],
        ["optimizer=adam", "optimizer.lr=0.001", "seed=3"],
        ["optimizer=adam", "optimizer.lr=0.1", "seed=3"],
    ]
