"""Early stopping, read back from a real store: the patience rule keeps the best epoch's weights
(the logged model and final metrics come from them), the least-squares rule stops within its
tolerance of `ols/loss`, the state survives a resume, and a sweep's summary shows each stop."""

from __future__ import annotations

import pytest

from tests.helpers import history
from trainlab.recorder.sweep_children import Child, early_stop, table

# Few rows, many features and much noise: val/loss falls, then rises as the model fits the noise.
OVERFIT = (
    "data=synthetic", "data.n_samples=30", "data.n_features=12", "data.noise=3.0",
    "data.val_split=0.5", "optimizer=adam", "optimizer.lr=0.05", "device.precision=64",
    "print_every=0", "max_epochs=200", "early_stop.patience=5",
)  # fmt: skip


def the_run(client, experiment: str):
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def test_patience_stops_and_keeps_the_best_weights(train_in_process, client):
    status, out, err = train_in_process(*OVERFIT, "experiment_name=patience")
    assert status == 0, err
    run = the_run(client, "patience")
    tags, metrics = run.data.tags, run.data.metrics
    val = history(client, run.info.run_id, "val/loss")
    best_epoch = min(range(len(val)), key=lambda e: val[e][1])
    assert tags["trainlab.early_stop.reason"] == "patience"
    stop_epoch = int(tags["trainlab.early_stop.epoch"])
    assert stop_epoch == best_epoch + 5 == len(val) - 1 < 199  # 5 epochs without improvement
    assert int(tags["trainlab.early_stop.best_epoch"]) == best_epoch
    # The final metrics (and the logged model) are the best epoch's, not the last one's.
    assert metrics["final/val_loss"] == pytest.approx(val[best_epoch][1], rel=1e-6)
    assert metrics["final/val_loss"] < val[-1][1]
    assert f"Early stop at epoch {stop_epoch}" in out


def test_ols_gap_stops_within_its_tolerance(train_in_process, client):
    status, _, err = train_in_process(
        "experiment=seed_pipeline", "print_every=0", "early_stop.ols_gap=0.5", "experiment_name=g"
    )
    assert status == 0, err
    run = the_run(client, "g")
    gaps = [g for _, g in history(client, run.info.run_id, "ols/gap")]
    stop = int(run.data.tags["trainlab.early_stop.epoch"])
    assert run.data.tags["trainlab.early_stop.reason"] == "ols_gap"
    assert len(gaps) == stop + 1 < 100  # full batch: one step per epoch, none after the stop
    assert gaps[-1] <= 0.5 < gaps[-2]


def test_early_stopping_state_survives_a_resume(train_in_process, client):
    assert train_in_process(*OVERFIT, "experiment_name=whole")[0] == 0
    whole = the_run(client, "whole")
    best, stop = (int(whole.data.tags[f"trainlab.early_stop.{k}"]) for k in ("best_epoch", "epoch"))
    assert best + 1 < stop  # stopped between the best epoch and the stop, it has waited a while
    assert train_in_process(*OVERFIT, f"max_epochs={best + 2}", "experiment_name=parts")[0] == 0
    part = the_run(client, "parts")
    assert "trainlab.early_stop.reason" not in part.data.tags
    status, _, err = train_in_process(f"resume={part.info.run_id}", "max_epochs=200")
    assert status == 0, err
    resumed = client.get_run(part.info.run_id)
    for key in ("reason", "epoch", "best_epoch", "best"):  # the wait went on where it was
        assert (
            resumed.data.tags[f"trainlab.early_stop.{key}"]
            == whole.data.tags[f"trainlab.early_stop.{key}"]
        )
    assert resumed.data.metrics["final/val_loss"] == pytest.approx(
        whole.data.metrics["final/val_loss"], rel=1e-9
    )


def test_summary_has_an_early_stop_column_only_when_a_child_stopped():
    stopped = {"trainlab.early_stop.reason": "patience", "trainlab.early_stop.epoch": "8"}
    assert early_stop(stopped) == "patience at epoch 8" and early_stop({}) == ""

    def child(job: int, name: str, lr: str, loss: float, stop: str) -> Child:
        overrides = {"optimizer.lr": lr}
        return Child(
            job=job,
            run_id=name,
            run_name=name,
            status="FINISHED",
            overrides=overrides,
            loss=loss,
            error="",
            stop=stop,
        )

    children = [child(0, "a", "1", 1.0, early_stop(stopped)), child(1, "b", "2", 2.0, "")]
    rows = table(children, ["optimizer.lr"])
    assert [r["early_stop"] for r in rows] == ["patience at epoch 8", ""]
    assert "early_stop" not in table(children[1:], ["optimizer.lr"])[0]
