"""Divergence: a NaN or inf train/loss stops the run at that step, FAILED, with the reason and
the step in its tags and every metric logged before it kept; `guard.nonfinite=warn` goes on."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import all_runs
from trainlab.callbacks.guard import DivergedError, NonFiniteLoss

# Unscaled synthetic data and SGD with lr 10: the loss grows ~1000x a step, inf at step 13.
DIVERGING = ("data=synthetic", "data.n_samples=64", "optimizer.lr=10", "max_epochs=50")


def test_nonfinite_loss_stops_the_run_failed(train_in_process, client):
    status, out, err = train_in_process(*DIVERGING, "print_every=1")
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainlab-train: error: train/loss became ")
    assert "lower optimizer.lr" in lines[0] and "data.standardize=true" in lines[0]
    (run,) = all_runs(client)
    assert run.info.status == "FAILED"
    assert run.data.tags["trainlab.failure"] == "nonfinite_loss"
    bad = int(run.data.tags["trainlab.failure_step"])
    assert f"at step {bad} with optimizer lr=10" in lines[0]
    history = client.get_metric_history(run.info.run_id, "train/loss")
    # Every step up to the bad one is kept (the bad one too), and nothing after it ran.
    assert [m.step for m in history] == list(range(bad + 1))
    assert all(math.isfinite(m.value) and m.value < 1e38 for m in history[:-1])
    assert not math.isfinite(history[-1].value) or history[-1].value > 1e300  # MLflow stores inf
    assert len(client.get_metric_history(run.info.run_id, "weight/0_0")) == bad + 1
    assert f"epoch {bad}," in out and f"epoch {bad + 1}," not in out
    assert "pred/after" not in run.data.metrics


def test_diverging_sgd_on_unscaled_diabetes(train_in_process, client):
    status, _, err = train_in_process(
        "experiment=diabetes",
        "optimizer=sgd",
        "optimizer.lr=10",
        "data.standardize=false",
        "print_every=0",
    )
    assert status == 2 and "train/loss became" in err
    (run,) = all_runs(client)
    assert run.info.status == "FAILED" and run.data.tags["trainlab.failure"] == "nonfinite_loss"


def test_warn_mode_keeps_training(train_in_process, client):
    status, _, err = train_in_process(*DIVERGING, "guard.nonfinite=warn", "print_every=0")
    assert status == 0, err
    assert err.count("trainlab-train: warning: train/loss became") == 1
    (run,) = all_runs(client)
    assert run.info.status == "FINISHED"
    assert run.data.tags["trainlab.warning"] == "nonfinite_loss"
    assert "trainlab.failure" not in run.data.tags
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 50


def test_finite_run_has_no_failure_tag(train_in_process, client):
    assert train_in_process("max_epochs=5", "print_every=0")[0] == 0
    (run,) = all_runs(client)
    assert not [k for k in run.data.tags if k.startswith(("trainlab.failure", "trainlab.warn"))]


@pytest.mark.parametrize("check_every", [1, 4, 100])
def test_guard_finds_the_exact_step_when_reading_late(check_every):
    """On a GPU the host reads the on-device check every N steps; the step found is exact."""
    guard = NonFiniteLoss(mode="stop", check_every=check_every)
    guard.start(torch.device("cpu"), step=20)
    guard.read_every_step = False  # the accelerator's way, here on the CPU
    losses = [1.0, 2.0, 3.0, float("nan"), 5.0, float("inf"), 7.0]
    steps_taken = 0
    with pytest.raises(DivergedError) as raised:
        for step, loss in enumerate(losses, start=20):
            steps_taken += 1
            guard.after_step(step, torch.tensor(loss), lambda: 0.1)
        guard.check(lambda: 0.1)
    assert raised.value.step == 23 and math.isnan(raised.value.value)
    if check_every == 1:
        assert steps_taken == 4  # stopped right at the bad step
