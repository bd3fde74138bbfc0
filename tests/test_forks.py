"""`trainlab-train fork=<run id>[@<step>]`, as a user runs it (real `trainlab-train` processes, a
real MLflow store): a new run from a run's committed checkpoint with the command line's changes,
its steps going on from the checkpoint's, tagged with where it came from, its params its own
config, none of the source's history copied; a fork of a fork; a best-k checkpoint's step; a
user's LightningModule. Refused in one line, with no run left RUNNING: a step the run did not
commit (or no longer keeps), a model the checkpoint cannot take."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers import all_runs, history, run_cli, store
from tests.test_any_model import TEMPLATE
from tests.test_bad_inputs import assert_nothing_running, assert_one_error_line
from trainlab.callbacks.fork_start import carried

ROOT = Path(__file__).resolve().parents[1]
LEAN = (
    "print_every=0",
    "tracking.plots=false",
    "tracking.log_model=false",
    "tracking.system_metrics=false",
)
# Checkpoints at steps 2, 4 and 6 (one full batch an epoch); the best two kept: 4 and 6.
SOURCE = ("max_epochs=6", "checkpoint.every_n_steps=2", "checkpoint.save_top_k=2", *LEAN)


@pytest.fixture(scope="module")
def source(tmp_path_factory, empty_store: Path) -> tuple[Path, str]:
    """A store holding one finished seed run with committed checkpoints: (home, run id)."""
    home = tmp_path_factory.mktemp("forks")
    shutil.copy(empty_store, home / "mlflow.db")
    done = run_cli(*SOURCE, home=home)
    assert done.returncode == 0, done.stderr
    (run,) = all_runs(store(home))
    return home, run.info.run_id


def new_run(home: Path, known: set[str]):
    (run,) = [r for r in all_runs(store(home)) if r.info.run_id not in known]
    return run


def steps(home: Path, run_id: str, key: str = "train/loss") -> list[int]:
    return [step for step, _ in history(store(home), run_id, key)]


def test_a_fork_goes_on_from_the_checkpoint_with_its_own_config(source):
    home, parent = source
    before = {r.info.run_id for r in all_runs(store(home))}
    done = run_cli(f"fork={parent}", "optimizer.lr=0.05", "max_epochs=9", *LEAN, home=home)
    assert done.returncode == 0, done.stderr
    fork = new_run(home, before)
    assert fork.info.status == "FINISHED"
    tags, params = fork.data.tags, fork.data.params
    assert tags["trainlab.forked_from"] == parent
    assert tags["trainlab.forked_at_step"] == "6"
    # Its params are its config: the source's recorded values with the command line's changes.
    assert params["optimizer.lr"] == "0.05" and params["max_epochs"] == "9"
    assert params["fork"] == f"{parent}@6"
    assert params["checkpoint.every_n_steps"] == "2", "the source's own value, not the default"
    # The steps go on from the checkpoint's, with the new learning rate; nothing is copied.
    assert steps(home, fork.info.run_id) == [6, 7, 8]
    assert {value for _, value in history(store(home), fork.info.run_id, "train/lr")} == {0.05}
    assert "pred/before" not in fork.data.metrics
    # Its first loss is the source's weights' (one full batch: its final training loss).
    parent_run = store(home).get_run(parent)
    first = history(store(home), fork.info.run_id)[0][1]
    assert first == pytest.approx(parent_run.data.metrics["final/train_loss"], rel=1e-5)
    assert steps(home, parent) == list(range(6)), "the source's history is untouched"
    assert f"Forking run {parent} at step 6 into a new run" in done.stdout
    assert f"#/experiments/{parent_run.info.experiment_id}/runs/{parent}" in done.stdout

    # A fork of the fork, with another seed: from the fork's own last checkpoint.
    first_fork = fork.info.run_id
    before.add(first_fork)
    done = run_cli(f"fork={first_fork}", "max_epochs=11", "seed=3", *LEAN, home=home)
    assert done.returncode == 0, done.stderr
    second = new_run(home, before)
    assert second.data.tags["trainlab.forked_from"] == first_fork
    assert second.data.tags["trainlab.forked_at_step"] == "9"
    assert second.data.params["optimizer.lr"] == "0.05", "the fork's own config goes on"
    assert second.data.params["seed"] == "3"
    assert steps(home, second.info.run_id) == [9, 10]


def test_a_fork_at_a_best_checkpoints_step(source):
    home, parent = source
    before = {r.info.run_id for r in all_runs(store(home))}
    done = run_cli(f"fork={parent}@4", "optimizer=adam", "optimizer.lr=0.1", *LEAN, home=home)
    assert done.returncode == 0, done.stderr
    fork = new_run(home, before)
    assert fork.data.tags["trainlab.forked_at_step"] == "4"
    assert fork.data.params["optimizer._target_"] == "torch.optim.Adam"
    assert fork.data.params["max_epochs"] == "6"
    assert steps(home, fork.info.run_id) == [4, 5]
    # The loss at step 4 is the source's at step 4: the best-2 slot's weights.
    assert history(store(home), fork.info.run_id)[0] == pytest.approx(
        history(store(home), parent)[4], rel=1e-5
    )


@pytest.mark.parametrize(
    "args,expected",
    [
        # Step 3 was never committed; step 2 was, but its checkpoint was replaced: not listed.
        (
            ("@3",),
            "never committed a checkpoint it keeps at step 3; expected one of its "
            "committed steps with a checkpoint: 4, 6",
        ),
        (("", "model=mlp", "max_epochs=8"), "the checkpoint cannot take this model"),
        (("", "max_epochs=6"), "max_epochs=6 leaves nothing to train"),
    ],
    ids=["uncommitted step", "another model", "nothing to train"],
)
def test_a_fork_that_cannot_start_is_one_line(source, args, expected):
    home, parent = source
    known = {r.info.run_id for r in all_runs(store(home))}
    at, *rest = args
    done = run_cli(f"fork={parent}{at}", *rest, *LEAN, home=home)
    assert_one_error_line(done.returncode, done.stderr, expected)
    assert {r.info.run_id for r in all_runs(store(home))} == known, "no run was made"
    assert_nothing_running(home)


def test_a_users_lightning_module_forks(home, client):
    """lightning-hydra-template's module: its checkpoint holds a network and optimizer and
    scheduler partials, which the fork rebuilds from its source's recorded config."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = run_cli(*TEMPLATE, "max_epochs=2", *LEAN, home=home, extra_env=env)
    assert done.returncode == 0, done.stderr
    (source_run,) = all_runs(client)
    parent = source_run.info.run_id
    done = run_cli(f"fork={parent}", "max_epochs=3", *LEAN, home=home, extra_env=env)
    assert done.returncode == 0, done.stderr
    fork = new_run(home, {parent})
    assert fork.info.status == "FINISHED"
    assert fork.data.tags["trainlab.forked_at_step"] == "16"
    assert steps(home, fork.info.run_id) == list(range(16, 24))  # 8 batches an epoch
    assert steps(home, fork.info.run_id, "val/loss") == [23]
    assert fork.data.params["model.kwargs.optimizer._target_"] == "torch.optim.Adam"


def test_a_forks_optimizer_keeps_its_state_only_where_it_is_of_the_same_kind():
    """What the fork's optimizer restores from the source's (callbacks/fork_start.py), with
    torch's own optimizers: momentum kept under the new lr; Adam's moments never given to SGD."""
    weights = [torch.nn.Parameter(torch.ones(3))]
    source = torch.optim.SGD(weights, lr=0.1, momentum=0.9)
    weights[0].grad = torch.ones(3)
    source.step()
    saved = source.state_dict()

    fork = torch.optim.SGD(weights, lr=0.01, momentum=0.9)
    fork.load_state_dict(carried(saved, fork.state_dict()))
    assert fork.param_groups[0]["lr"] == 0.01
    assert torch.equal(fork.state[weights[0]]["momentum_buffer"], torch.ones(3))

    adam = torch.optim.Adam(weights, lr=0.001)
    adam.load_state_dict(carried(saved, adam.state_dict()))
    assert adam.param_groups[0]["betas"] == (0.9, 0.999) and not adam.state
    adam.step()  # a fresh Adam steps (SGD's groups would lack its settings)
