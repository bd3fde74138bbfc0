"""The small things of a search: a pruner that cannot prune within n_trials says so once, and
an Optuna parent run is named and tagged as a search (a grid's as a sweep). Through the real
entry in this process."""

from __future__ import annotations

import statistics

import optuna
import pytest

from tests.helpers import all_runs, history

SEARCH = ("-m", "hydra/sweeper=optuna", "optimizer.lr=tag(log,interval(0.001,0.1))",
          "max_epochs=3", "print_every=0", "tracking.plots=false", "tracking.log_model=false")  # fmt: skip


def parent(client):
    (run,) = [r for r in all_runs(client) if r.data.tags.get("trainlab.sweep") == "parent"]
    return run


def test_a_pruner_that_cannot_prune_within_n_trials_says_so_once(train_in_process, client):
    status, _, err = train_in_process(
        *SEARCH, "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=median"
    )
    assert status == 0, err
    line = (
        "hydra.sweeper.pruner=median prunes nothing within n_trials=2: it waits for 5 completed "
        "trials (hydra.sweeper.pruning.n_startup_trials)"
    )
    assert err.count(line) == 1, err


def test_an_optuna_parent_is_named_and_tagged_as_a_search_and_study_and_runs_know_each_other(
    train_in_process, client, home
):
    status, _, err = train_in_process(*SEARCH, "hydra.sweeper.n_trials=2", "sweep.replicates=2")
    assert status == 0, err
    tags = parent(client).data.tags
    assert parent(client).info.run_name.startswith("search ")
    assert tags["trainlab.sweep.kind"] == "search" and tags["trainlab.preset"] == "none"
    storage = f"sqlite:///{home / 'optuna.db'}"
    (name,) = optuna.study.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    children = [r for r in all_runs(client) if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4
    for child in children:
        tags = child.data.tags
        assert tags["trainlab.sweep.study"] == name
        trial = trials[int(tags["trainlab.sweep.trial"])]
        replicate = int(tags["trainlab.sweep.job"]) - trial.user_attrs["trainlab.jobs"][0]
        suffix = f".{replicate}" if replicate else ""
        assert trial.user_attrs[f"mlflow.run_id{suffix}"] == child.info.run_id
        assert trial.user_attrs[f"trainlab.model{suffix}"].startswith("trainlab.models.")
        lr = trial.params["optimizer.lr"]
        assert tags["trainlab.sweep.config"] == f"optimizer.lr={lr}"  # replicates share it


def test_a_grid_parent_is_named_and_tagged_as_a_grid(train_in_process, client):
    status, _, err = train_in_process("-m", "optimizer.lr=0.01,0.02", "max_epochs=2")
    assert status == 0, err
    tags = parent(client).data.tags
    assert parent(client).info.run_name.startswith("sweep ")
    assert tags["trainlab.sweep.kind"] == "grid" and tags["trainlab.preset"] == "none"


def test_replicates_give_each_configuration_a_band_at_every_step(train_in_process, client):
    status, _, err = train_in_process(
        "-m", "optimizer.lr=0.01,0.03", "sweep.replicates=2", "max_epochs=6", "print_every=0"
    )
    assert status == 0, err
    run = parent(client)
    children = [r for r in all_runs(client) if "mlflow.parentRunId" in r.data.tags]
    configs = {c.data.tags["trainlab.sweep.config"] for c in children}
    assert configs == {"optimizer.lr=0.01", "optimizer.lr=0.03"}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "summary")}
    assert "summary/replicate_curves.png" in artifacts
    for number, config in enumerate(["optimizer.lr=0.01", "optimizer.lr=0.03"]):
        mine = [c for c in children if c.data.tags["trainlab.sweep.config"] == config]
        curves = [dict(history(client, c.info.run_id)) for c in mine]
        means = history(client, run.info.run_id, f"replicates/config_{number}/mean")
        stds = history(client, run.info.run_id, f"replicates/config_{number}/std")
        assert [s for s, _ in means] == list(range(6)) == [s for s, _ in stds]
        for (step, mean), (_, std) in zip(means, stds, strict=True):
            values = [c[step] for c in curves]
            assert mean == pytest.approx(statistics.fmean(values))
            assert std == pytest.approx(statistics.stdev(values))
