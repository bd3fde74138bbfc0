"""trainlab's Optuna sweeper (`hydra/sweeper=optuna`) through the real entry in this process
(Hydra's multirun, the basic launcher, a real recorder process, a SQLite MLflow store and a SQLite
Optuna study in a temporary TRAINLAB_HOME): pruning, replicates, several objectives, failures, and
the bad inputs that stop a search before anything is recorded."""

from __future__ import annotations

import csv
import io
import sqlite3
import statistics
from pathlib import Path

import optuna
import pytest
import yaml

from tests.helpers import all_runs, history, run_cli
from tests.team_service import fresh_database

# Small searches of the optuna_lr preset: synthetic data with validation, 10-30 epochs a job.
SEARCH = ("-m", "experiment=optuna_lr", "tracking.plots=false", "tracking.log_model=false")
PRUNING = (
    "hydra.sweeper.pruner=median",
    "hydra.sweeper.pruning.n_startup_trials=2",
    "hydra.sweeper.pruning.n_warmup_steps=3",
)


def parent_and_children(client):
    runs = all_runs(client)
    parents = [r for r in runs if r.data.tags.get("trainlab.sweep") == "parent"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    children.sort(key=lambda r: int(r.data.tags["trainlab.sweep.job"]))
    return client.get_run(parent.info.run_id), children


def the_study(home: Path) -> optuna.Study:
    storage = f"sqlite:///{home / 'optuna.db'}"
    (name,) = optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def summary_rows(client, parent, name: str) -> list[dict]:
    text = Path(client.download_artifacts(parent.info.run_id, f"summary/{name}")).read_text()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.slow
def test_pruned_trials_stop_early_finished_and_listed_apart(train_in_process, client, home):
    status, out, err = train_in_process(
        *SEARCH, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "max_epochs=30", *PRUNING,
        "hydra.sweeper.sampler.seed=1",
    )  # fmt: skip
    assert status == 0, err
    parent, children = parent_and_children(client)
    pruned = [c for c in children if c.data.tags.get("trainlab.sweep.pruned") == "true"]
    assert pruned, out  # this seeded TPE search prunes its fourth trial after two completed
    study = the_study(home)
    states = {t.user_attrs["trainlab.jobs"][0]: t.state.name for t in study.trials}
    assert len(study.trials) == 4 and len(children) == 4
    for child in children:
        job = int(child.data.tags["trainlab.sweep.job"])
        is_pruned = child in pruned
        assert states[job] == ("PRUNED" if is_pruned else "COMPLETE")
        assert child.info.status == "FINISHED"  # a result, never a failure
        steps = [s for s, _ in history(client, child.info.run_id)]
        if is_pruned:  # stopped at the step boundary, its rows and checkpoint committed
            last = int(child.data.tags["trainlab.sweep.pruned_step"])
            assert last < 29 and steps == list(range(last + 1))
            assert "trainlab.checkpoint.step" in child.data.tags
        else:
            assert steps == list(range(30))
    assert parent.data.metrics["sweep/pruned"] == len(pruned)
    assert parent.data.metrics["sweep/failed"] == 0
    assert parent.data.tags["trainlab.sweep.pruned_jobs"].split() == [
        c.data.tags["trainlab.sweep.job"] for c in pruned
    ]
    best = parent.data.tags["trainlab.sweep.best_run_id"]
    assert best not in {c.info.run_id for c in pruned}
    rows = summary_rows(client, parent, "children.csv")
    assert [bool(r["pruned"]) for r in rows] == [c in pruned for c in children]
    note = parent.data.tags["mlflow.note.content"]  # the parent's description in the dashboard
    assert note.startswith("Sweep summary (") and "Pruned (stopped by the study's pruner" in note
    assert "?workflowType=machine_learning" in out
    assert "Traceback" not in err


@pytest.mark.slow
def test_grid_replicates_report_mean_and_spread_and_pick_the_best_mean(train_in_process, client):
    status, out, err = train_in_process(
        "-m", "data=synthetic", "data.val_split=0.2", "optimizer.lr=0.01,0.1", "max_epochs=10",
        "sweep.replicates=3", "print_every=0", "tracking.plots=false", "tracking.log_model=false",
    )  # fmt: skip
    assert status == 0, err
    parent, children = parent_and_children(client)
    seeds = [(c.data.params["optimizer.lr"], c.data.params["seed"]) for c in children]
    assert seeds == [(lr, s) for lr in ("0.01", "0.1") for s in ("0", "1", "2")]
    rows = summary_rows(client, parent, "replicates.csv")
    assert [r["optimizer.lr"] for r in rows] == ["0.01", "0.1"]
    means = []
    for row, lr in zip(rows, ("0.01", "0.1"), strict=True):
        losses = [
            c.data.metrics["final/val_loss"]
            for c in children
            if c.data.params["optimizer.lr"] == lr
        ]
        assert float(row["mean_loss"]) == pytest.approx(statistics.fmean(losses))
        assert float(row["std_loss"]) == pytest.approx(statistics.stdev(losses))
        means.append(statistics.fmean(losses))
    best = min(range(2), key=lambda i: means[i])
    assert parent.data.tags["best.optimizer.lr"] == rows[best]["optimizer.lr"]
    assert parent.data.metrics["best/mean_loss"] == pytest.approx(means[best])
    series = client.get_metric_history(parent.info.run_id, "replicates/mean_loss")
    assert sorted(m.step for m in series) == [0, 1]
    assert [m.value for m in sorted(series, key=lambda m: m.step)] == pytest.approx(means)
    png = Path(client.download_artifacts(parent.info.run_id, "summary/replicates.png"))
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "mean final loss" in out


@pytest.mark.slow
def test_search_optimizes_the_mean_of_a_trials_replicates(train_in_process, client, home):
    status, _, err = train_in_process(
        *SEARCH, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1", "max_epochs=10",
        "sweep.replicates=2", "seed=7",
    )  # fmt: skip
    assert status == 0, err
    _, children = parent_and_children(client)
    assert [c.data.params["seed"] for c in children] == ["7", "8", "7", "8"]
    for trial in the_study(home).trials:
        jobs = trial.user_attrs["trainlab.jobs"]
        losses = [children[j].data.metrics["final/val_loss"] for j in jobs]
        assert trial.value == pytest.approx(statistics.fmean(losses))
        lr = {children[j].data.params["optimizer.lr"] for j in jobs}
        assert len(lr) == 1  # the replicates of a trial share its values


@pytest.mark.slow
def test_several_objectives_give_a_pareto_front_on_the_parent(train_in_process, client, home):
    status, _, err = train_in_process(
        *SEARCH, "hydra/sweeper/sampler=nsgaii", "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2", "max_epochs=10",
        "hydra.sweeper.objectives=[loss:minimize,fit_seconds:minimize]",
    )  # fmt: skip
    assert status == 0, err
    parent, children = parent_and_children(client)
    study = the_study(home)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    front = {t.number for t in study.best_trials}
    rows = summary_rows(client, parent, "pareto.csv")
    assert {int(r["trial"]) for r in rows} == front
    members = {j for t in study.best_trials for j in t.user_attrs["trainlab.jobs"]}
    for child in children:
        job = int(child.data.tags["trainlab.sweep.job"])
        assert (child.data.tags.get("trainlab.sweep.pareto") == "true") == (job in members)
        assert child.data.metrics["fit/seconds"] > 0  # what the job measured for the study
        trial = next(t for t in study.trials if job in t.user_attrs["trainlab.jobs"])
        assert trial.values[0] == pytest.approx(child.data.metrics["final/val_loss"])
        assert trial.values[1] == pytest.approx(child.data.metrics["fit/seconds"])
    assert parent.data.tags["trainlab.sweep.pareto_jobs"].split() == [
        str(j) for j in sorted(members)
    ]
    assert "Pareto front (loss, fit_seconds)" in parent.data.tags["mlflow.note.content"]


@pytest.mark.slow
def test_a_failed_trial_is_failed_in_mlflow_and_the_study_and_the_search_goes_on(
    train_in_process, client, home
):
    status, _, err = train_in_process(
        *SEARCH, "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=4", "max_epochs=30",
        "optimizer=sgd", "optimizer.lr=choice(0.05,100)", "data.n_samples=64",
    )  # fmt: skip
    assert status == 0, err
    assert "trainlab-train: warning: 1 of 2 jobs failed" in err
    _, children = parent_and_children(client)
    by_lr = {c.data.params["optimizer.lr"]: c for c in children}
    assert by_lr["100.0"].info.status == "FAILED" and by_lr["0.05"].info.status == "FINISHED"
    states = {str(t.params["optimizer.lr"]): t.state.name for t in the_study(home).trials}
    assert states == {"100": "FAIL", "0.05": "COMPLETE"}  # the grid has 2 points: 2 trials


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("hydra.sweeper.pruner=mean",),
            "hydra.sweeper.pruner='mean' is not allowed: expected one of none, median",
        ),
        (
            ("hydra/sweeper/sampler=bayes",),
            "hydra/sweeper/sampler=bayes: no such option; expected one of cmaes, grid, nsgaii, random, tpe",
        ),
        (("hydra.sweeper.params=null",), "the search space is empty"),
        (("optimizer.lr=interval(0.3,0.001)",), "optimizer.lr=interval(0.3, 0.001) is empty"),
        (
            ("data.noise=tag(log,interval(0,1))",),
            "data.noise=tag(log, interval(0.0, 1.0)): a log scale needs low > 0",
        ),
        (("hydra/sweeper/sampler=grid",), "optimizer.lr is an interval, which has no grid"),
        (
            (
                "hydra.sweeper.pruner=median",
                "hydra.sweeper.objectives=[loss:minimize,parameters:minimize]",
            ),
            "Optuna prunes single-objective studies only",
        ),
        (
            ("hydra.sweeper.objectives=[loss:minimize,speed:maximize]",),
            "'speed' is not an objective; expected loss, fit_seconds, parameters (each name:minimize",
        ),
        (
            ("hydra.sweeper.storage=sqlite:////no/such/folder/optuna.db",),
            "its folder does not exist",
        ),
        (("sweep.replicates=0",), "sweep.replicates=0 is not allowed: expected an integer >= 1"),
    ],
)
def test_a_bad_search_stops_before_anything_runs(train_in_process, client, home, args, expected):
    status, _, err = train_in_process(*SEARCH, "max_epochs=5", *args)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, err
    assert lines[0].startswith("trainlab-train: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert all_runs(client) == []  # no parent, no child


def test_a_locked_study_database_is_one_line(train_in_process, client, home):
    lock = sqlite3.connect(home / "optuna.db", isolation_level=None)
    lock.execute("create table hold (x)")
    lock.execute("begin exclusive")
    try:
        status, _, err = train_in_process(*SEARCH, "max_epochs=5")
    finally:
        lock.close()
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, err
    assert "the study's database sqlite:///" in lines[0] and "database is locked" in lines[0]
    assert all_runs(client) == []


def test_sweep_resume_of_a_run_that_is_not_a_sweep_is_refused(train_in_process, client):
    status, _, err = train_in_process("max_epochs=3", "print_every=0")
    assert status == 0, err
    (single,) = all_runs(client)
    status, _, err = train_in_process(
        "-m", f"sweep.resume={single.info.run_id}", "optimizer.lr=0.01,0.02", "max_epochs=3"
    )
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, err
    assert f"sweep.resume={single.info.run_id}: run {single.info.run_id}" in lines[0]
    assert "is not a sweep's parent run" in lines[0]
    assert [r.info.status for r in all_runs(client)] == ["FINISHED"]  # nothing else recorded


@pytest.mark.slow
def test_a_search_records_the_best_parameters_and_each_trials_jobs(train_in_process, client):
    status, _, err = train_in_process(*SEARCH, "hydra.sweeper.n_trials=3", "max_epochs=10")
    assert status == 0, err
    parent, children = parent_and_children(client)
    assert all("final/val_loss" in c.data.metrics for c in children)  # the objective
    results = yaml.safe_load(
        Path(
            client.download_artifacts(parent.info.run_id, "sweep/optimization_results.yaml")
        ).read_text()
    )
    assert [t["jobs"] for t in results["trials"]] == [[0], [1], [2]]
    tags = parent.data.tags
    assert tags["best.optimizer"] == results["best_params"]["optimizer"]
    assert float(tags["best.optimizer.lr"]) == pytest.approx(results["best_params"]["optimizer.lr"])
    best = next(c for c in children if c.info.run_id == tags["trainlab.sweep.best_run_id"])
    assert best.data.metrics["final/val_loss"] == pytest.approx(results["best_value"])
    assert best.data.metrics["final/val_loss"] == min(
        c.data.metrics["final/val_loss"] for c in children
    )


def test_the_same_search_after_it_ended_searches_anew_and_a_spent_named_study_says_so(
    train_in_process, client, home
):
    search = (*SEARCH, "hydra.sweeper.n_trials=2", "max_epochs=5")
    for _ in range(2):  # the second time, the first sweep has ended: a new one, a new study
        status, _, err = train_in_process(*search)
        assert status == 0, err
    storage = f"sqlite:///{home / 'optuna.db'}"
    names = optuna.study.get_all_study_names(storage)
    assert len(names) == 2
    for name in names:
        assert len(optuna.load_study(study_name=name, storage=storage).trials) == 2
    parents = [r for r in all_runs(client) if r.data.tags.get("trainlab.sweep") == "parent"]
    assert sorted(r.info.status for r in parents) == ["FINISHED", "FINISHED"]
    # A study named on the command line is the user's: once its trials have ended, nothing runs.
    named = (*search, f"hydra.sweeper.study_name={names[0]}")
    status, out, err = train_in_process(*named)
    assert status != 0
    assert "Nothing to run: raise hydra.sweeper.n_trials above 2" in out
    assert err.count("no job of the sweep ran") == 1, err
    assert all(r.info.status != "RUNNING" for r in all_runs(client))
    # What the failed sweep came to is not inherited by the next command of this process.
    status, _, err = train_in_process("print_every=0", "max_epochs=2", "tracking.plots=false")
    assert status == 0, err


@pytest.mark.slow
def test_trials_in_forked_workers_prune_through_a_postgresql_study(home, client):
    """The study lives where every trial's process reaches it: here the team's PostgreSQL, the
    trials in the parallel launcher's workers."""
    with fresh_database() as url:
        done = run_cli(
            *SEARCH, "hydra/launcher=parallel", "hydra.sweeper.n_trials=4",
            "hydra.sweeper.n_jobs=2", "max_epochs=30", *PRUNING, "hydra.sweeper.sampler.seed=1",
            f"hydra.sweeper.storage='{url}'", home=home,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        (name,) = optuna.study.get_all_study_names(url)
        trials = optuna.load_study(study_name=name, storage=url).trials
    assert not (home / "optuna.db").exists()
    parent, children = parent_and_children(client)
    main = parent.data.tags["trainlab.pid"]
    assert main not in {c.data.tags["trainlab.pid"] for c in children}  # trials in the workers
    states = [t.state.name for t in trials]
    assert "PRUNED" in states and states.count("COMPLETE") >= 2
    for trial, child in zip(trials, children, strict=True):
        assert (trial.state.name == "PRUNED") == ("trainlab.sweep.pruned" in child.data.tags)
        assert len(trial.intermediate_values) >= 4  # reported from the worker, every epoch
