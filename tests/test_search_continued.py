"""A seeded search killed with SIGKILL after a few trials and run again with the same command
measures no point twice and continues the trial it cut short in that trial's own run:
`n_trials` children, all FINISHED, no two with the same parameters (TPE and random samplers).
Real `trainlab-train -m` processes."""

from __future__ import annotations

import os
import signal

import optuna
import pytest

from tests.helpers import run_cli, start_cli, store, until
from tests.test_sweep_resume import LEAN, children_of

pytestmark = pytest.mark.slow  # end to end: real processes, signals

N_TRIALS = 6


def killed_after(client, finished: int):
    """The child of the trial after `finished` ones, once it trains (a checkpoint or not)."""
    _, children = children_of(client)
    done = [c for c in children if c.info.status == "FINISHED"]
    going = [c for c in children if c.info.status == "RUNNING"]
    return len(done) >= finished and going


@pytest.mark.parametrize(
    ("sampler", "checkpoints"),
    [("tpe", "checkpoint.every_n_steps=50"), ("random", "checkpoint.every_n_steps=null")],
    ids=["tpe", "random-killed-before-its-first-checkpoint"],
)  # fmt: skip
def test_a_continued_seeded_search_never_measures_a_point_twice(home, sampler, checkpoints):
    # Without every_n_steps a checkpoint comes once a minute: the cut-short trial has none, and
    # continues in its own run from step 0, the steps its run holds not written twice.
    search = (
        "-m", "experiment=optuna_lr", f"hydra/sweeper/sampler={sampler}",
        "hydra.sweeper.sampler.seed=5", f"hydra.sweeper.n_trials={N_TRIALS}",
        "hydra.sweeper.n_jobs=1", "max_epochs=300", checkpoints, *LEAN,
    )  # fmt: skip
    first = start_cli(home, *search)
    client = store(home)
    until("three trials done, the fourth training", lambda: killed_after(client, 3))
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    cut_short = {c.info.run_id for c in children_of(client)[1] if c.info.status == "RUNNING"}

    again = run_cli(*search, home=home, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    (parent,), children = children_of(client)
    assert parent.info.status == "FINISHED"
    assert len(children) == N_TRIALS
    assert all(c.info.status == "FINISHED" for c in children)
    assert cut_short <= {c.info.run_id for c in children}  # continued in its own run
    for child in children:  # every step once, from 0 to the last
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "train/loss")]
        assert sorted(steps) == list(range(len(steps))), child.info.run_id
    params = {c.data.tags["trainlab.sweep.overrides"] for c in children}
    assert len(params) == N_TRIALS
    storage = f"sqlite:///{home / 'optuna.db'}"
    (name,) = optuna.study.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * N_TRIALS
    assert len({tuple(sorted(t.params.items())) for t in trials}) == N_TRIALS
