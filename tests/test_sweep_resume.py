"""A sweep stopped half-way and run again with the same command continues: one parent run, the
finished children not trained again, a killed child continued from its checkpoint in its own run,
an Optuna study continued up to n_trials with no trial counted twice. Real `trainlab-train -m`
processes, stopped with SIGINT and SIGKILL, with the basic, the parallel and the submitit
launcher."""

from __future__ import annotations

import os
import signal

import optuna
import pytest

from tests.helpers import all_runs, history, run_cli, start_cli, store, until

pytestmark = pytest.mark.slow  # end to end: real processes, signals

# Jobs long enough to be caught training (1000 steps), with a committed checkpoint every 50.
LONG = ("max_epochs=1000", "checkpoint.every_n_steps=50", "print_every=0")
LEAN = ("tracking.plots=false", "tracking.log_model=false", "tracking.system_metrics=false")


def children_of(client):
    runs = all_runs(client)
    parents = [r for r in runs if r.data.tags.get("trainlab.sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, sorted(children, key=lambda r: int(r.data.tags["trainlab.sweep.job"]))


def caught_training(client, finished: int, training: int):
    """True once `finished` children ended FINISHED and `training` more have a checkpoint."""
    _, children = children_of(client)
    done = [c for c in children if c.info.status == "FINISHED"]
    going = [
        c for c in children
        if c.info.status == "RUNNING" and "trainlab.checkpoint.step" in c.data.tags
    ]  # fmt: skip
    return len(done) >= finished and len(going) >= training


def test_grid_sweep_stopped_by_sigint_continues_with_the_same_command(home):
    sweep = ("-m", "optimizer.lr=0.01,0.02,0.03", *LONG, *LEAN)
    first = start_cli(home, *sweep)
    client = store(home)
    until("two jobs done, the third training", lambda: caught_training(client, 2, 1))
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=120) == 130
    (parent,), before = children_of(client)
    assert parent.info.status == "KILLED"
    assert [c.info.status for c in before] == ["FINISHED", "FINISHED", "KILLED"]

    again = run_cli(*sweep, home=home)
    assert again.returncode == 0, again.stderr
    assert "Continuing the sweep in " in again.stdout
    assert again.stdout.count("not trained again") == 2, again.stdout + again.stderr
    (resumed_parent,), after = children_of(client)
    assert resumed_parent.info.run_id == parent.info.run_id  # one parent
    assert resumed_parent.info.status == "FINISHED"
    assert resumed_parent.data.tags["trainlab.sweep.continued"] == "1"
    assert [c.info.run_id for c in after] == [c.info.run_id for c in before]  # no new run
    assert all(c.info.status == "FINISHED" for c in after)
    for old, new in zip(before[:2], after[:2], strict=True):
        assert new.info.end_time == old.info.end_time  # not trained again
    continued = after[2]
    assert "trainlab.resumed_at_step" in continued.data.tags
    assert [s for s, _ in history(client, continued.info.run_id)] == list(range(1000))


# With the parallel launcher the killed sweep's forked workers notice, stop their jobs at a step
# with a checkpoint (KILLED) and exit; submitit's jobs are processes of their own and train on to
# their end (FINISHED). Either way the same command continues the study in the same runs.
@pytest.mark.parametrize(
    "launcher, orphans", [("parallel", "KILLED"), ("submitit_local", "FINISHED")]
)
def test_optuna_search_killed_continues_its_study(home, launcher, orphans):
    search = (
        "-m", "experiment=optuna_lr", f"hydra/launcher={launcher}", "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2", *LONG, *LEAN,
    )  # fmt: skip
    first = start_cli(home, *search)
    client = store(home)
    until("the first two trials training", lambda: caught_training(client, 0, 2), timeout=120)
    os.kill(first.pid, signal.SIGKILL)  # the sweep's main process, not its jobs
    first.wait(timeout=30)
    until(
        "the orphaned jobs ended",
        lambda: all(c.info.status != "RUNNING" for c in children_of(client)[1]),
        timeout=120,
    )
    _, before = children_of(client)
    assert [c.info.status for c in before] == [orphans, orphans]

    again = run_cli(*search, home=home, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "2 cut short to finish" in again.stdout
    assert "Asynchronous trials: 2 jobs at once" in again.stdout + again.stderr
    (parent,), after = children_of(client)
    assert parent.info.status == "FINISHED"
    assert len(after) == 4 and [c.info.run_id for c in after[:2]] == [c.info.run_id for c in before]
    for child in after:
        assert child.info.status == "FINISHED"
        assert [s for s, _ in history(client, child.info.run_id)] == list(range(1000))
    storage = f"sqlite:///{home / 'optuna.db'}"
    (name,) = optuna.study.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4  # n_trials in all, none twice
    assert [t.user_attrs["trainlab.jobs"] for t in trials] == [[0], [1], [2], [3]]
    for trial, child in zip(trials, after, strict=True):
        assert trial.value == pytest.approx(child.data.metrics["final/val_loss"])
