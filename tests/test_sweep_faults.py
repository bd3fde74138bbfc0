"""A sweep meets faults: a job's process killed under the `parallel` launcher (the other jobs go
on, the sweep ends with its summary, the same command continues the killed job in its own run),
two identical sweep commands at once (the second refuses), a continued trial whose reports ran
past its checkpoint (it reports again from its committed step, without Optuna's warnings).
Real `trainlab-train -m` processes, real SIGKILL."""

from __future__ import annotations

import os
import signal

import optuna
import pytest

from tests.helpers import history, run_cli, start_cli, store, until
from tests.test_sweep_resume import LEAN, caught_training, children_of

pytestmark = pytest.mark.slow  # end to end: real processes, signals

LONG = ("max_epochs=600", "checkpoint.every_n_steps=50", "print_every=0")


def kill_training_job(client, job: int) -> str:
    """SIGKILL the process of sweep job `job` once its run has a checkpoint; its run id."""
    child = until(
        f"job {job} training with a checkpoint",
        lambda: next(
            (
                c for c in children_of(client)[1]
                if c.data.tags["trainlab.sweep.job"] == str(job)
                and c.info.status == "RUNNING" and "trainlab.checkpoint.step" in c.data.tags
            ),
            None,
        ),
    )  # fmt: skip
    os.kill(int(child.data.tags["trainlab.pid"]), signal.SIGKILL)
    return child.info.run_id


def test_a_dead_job_process_leaves_the_sweep_going_and_the_same_command_continues_it(home):
    sweep = ("-m", "hydra/launcher=parallel", "optimizer.lr=0.01,0.02,0.03,0.04", *LONG, *LEAN)
    first = start_cli(home, *sweep)
    client = store(home)
    killed = kill_training_job(client, 0)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    assert "its process died (signal SIGKILL)" in out + err
    assert "1 of 4 jobs were killed (0): the same command continues them" in err
    assert "Sweep summary" in out  # it ended with its summary
    (parent,), before = children_of(client)
    assert parent.info.status == "KILLED"
    assert [c.info.status for c in before] == ["KILLED", "FINISHED", "FINISHED", "FINISHED"]
    assert before[0].info.run_id == killed
    for child in before[1:]:  # not stopped by the other job's death
        assert [s for s, _ in history(client, child.info.run_id)] == list(range(600))

    again = run_cli(*sweep, home=home, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Continuing the sweep in " in again.stdout
    assert again.stdout.count("not trained again") == 3
    (same_parent,), after = children_of(client)
    assert same_parent.info.run_id == parent.info.run_id
    assert same_parent.info.status == "FINISHED"
    assert [c.info.run_id for c in after] == [c.info.run_id for c in before]  # no new run
    assert all(c.info.status == "FINISHED" for c in after)
    assert "trainlab.resumed_at_step" in after[0].data.tags
    assert [s for s, _ in history(client, killed)] == list(range(600))


def test_the_same_sweep_twice_at_once_the_second_refuses_in_one_line(home):
    # Jobs far longer than the second command's start: it must meet the first one running
    # however loaded the machine is; the first is stopped once the second has answered.
    endless = ("max_epochs=1000000", "checkpoint.every_n_steps=50", "print_every=0")
    sweep = ("-m", "hydra/launcher=parallel", "optimizer.lr=0.01,0.02", *endless, *LEAN)
    first = start_cli(home, *sweep)
    try:
        client = store(home)
        until("the first command's jobs training", lambda: caught_training(client, 0, 1))
        second = run_cli(*sweep, home=home)
        assert first.poll() is None, "the first command ended before the second one answered"
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=120)
    finally:  # never leave its endless jobs behind (they stop once their launcher is gone)
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2, second.stdout + second.stderr
    (line,) = second.stderr.strip().splitlines()
    assert line.startswith("trainlab-train: error: the same sweep runs already (process ")
    assert first.returncode == 130, out + err
    parents, children = children_of(client)
    assert len(parents) == 1  # one sweep: the second made no parent and no child
    assert len(children) == 2 and all(c.info.status == "KILLED" for c in children)


def test_a_continued_trial_reports_from_its_committed_step(home):
    search = (
        "-m", "experiment=optuna_lr", "hydra/launcher=parallel", "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner=median", "data.val_split=0.2", *LONG,
        *LEAN,
    )  # fmt: skip
    first = start_cli(home, *search)
    client = store(home)
    until("both trials training", lambda: caught_training(client, 0, 2))
    storage = f"sqlite:///{home / 'optuna.db'}"
    until(
        "trial 0 reported past its checkpoint",
        lambda: _reported_past_checkpoint(client, storage),
    )
    killed = kill_training_job(client, 0)
    out, _ = first.communicate(timeout=300)
    assert "Trial 0: a job's process died (signal SIGKILL)" in out
    again = run_cli(*search, home=home, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    output = again.stdout + again.stderr
    assert "already reported" not in output and "UserWarning" not in output
    (name,) = optuna.study.get_all_study_names(storage)
    trial = optuna.load_study(study_name=name, storage=storage).trials[0]
    assert trial.state.name == "COMPLETE"
    # The study's reports are the continued run's epochs, each the value that run had then.
    val = dict(history(client, killed, "val/loss"))
    epochs = sorted(trial.intermediate_values)
    assert epochs == list(range(len(epochs))) and len(epochs) == len(val)
    for (_, value), epoch in zip(sorted(val.items()), epochs, strict=True):
        assert trial.intermediate_values[epoch] == pytest.approx(value)


def _reported_past_checkpoint(client, storage: str) -> bool:
    """Trial 0 has reported more epochs than its run has committed (rows go to MLflow with each
    checkpoint)."""
    names = optuna.study.get_all_study_names(storage)
    if not names:
        return False
    trial = optuna.load_study(study_name=names[0], storage=storage).trials[0]
    run = next(c for c in children_of(client)[1] if c.data.tags["trainlab.sweep.job"] == "0")
    committed = history(client, run.info.run_id, "val/loss")
    return len(committed) >= 2 and len(trial.intermediate_values) > len(committed) + 2


def test_an_asynchronous_search_stopped_with_sigint_continues_with_the_same_command(home):
    search = (
        "-m", "experiment=optuna_lr", "hydra/launcher=parallel", "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=2", *LONG, *LEAN,
    )  # fmt: skip
    first = start_cli(home, *search)
    client = store(home)
    until("two trials training", lambda: caught_training(client, 0, 2))
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 130, out + err
    (parent,), before = children_of(client)
    assert parent.info.status == "KILLED"
    assert [c.info.status for c in before] == ["KILLED", "KILLED"]  # stopped with a checkpoint

    again = run_cli(*search, home=home, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 cut short to finish" in again.stdout
    (same,), after = children_of(client)
    assert same.info.run_id == parent.info.run_id and same.info.status == "FINISHED"
    assert [c.info.run_id for c in after[:2]] == [c.info.run_id for c in before]
    assert len(after) == 3 and all(c.info.status == "FINISHED" for c in after)
    for child in after:
        assert [s for s, _ in history(client, child.info.run_id)] == list(range(600))
    storage = f"sqlite:///{home / 'optuna.db'}"
    (name,) = optuna.study.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3  # none twice, none lost
