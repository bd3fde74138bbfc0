"""Callbacks from the config, trainlab's own included, and trainlab's callbacks on a module it did
not write: read back from a real store, through the real entry point and a real Trainer."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from tests.helpers import all_runs, history, run_cli
from trainlab.callbacks import CommitCheckpoints, DivergedError, DivergenceGuard, StepRows
from trainlab.callbacks.logger import RecorderLogger
from trainlab.config.checkpoint import CheckpointConfig
from trainlab.data.batches import TensorBatches
from trainlab.signals import Interrupts
from trainlab.tracking.messages import EndStatus, FinalReport, RunSpec
from trainlab.tracking.recorders import start_recorder
from trainlab.tracking.run import TrackedRun

USER_CALLBACK = """
import lightning as L


class CountSteps(L.Callback):
    '''A user's callback: counts optimizer steps, logs them each epoch, writes them at the end.'''

    def __init__(self, out: str) -> None:
        self.out, self.steps = out, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps += 1

    def on_train_epoch_end(self, trainer, pl_module):
        pl_module.log("user/steps", float(self.steps))

    def on_train_end(self, trainer, pl_module):
        with open(self.out, "w") as file:
            file.write(str(self.steps))
"""


@pytest.mark.slow
def test_a_stock_and_a_users_callback_from_the_command_line_both_run(home, client, tmp_path):
    package = tmp_path / "mine"
    package.mkdir()
    (package / "mycallbacks.py").write_text(USER_CALLBACK)
    out = tmp_path / "steps.txt"
    done = run_cli(
        "max_epochs=30",
        "print_every=0",
        "+callbacks.lr._target_=lightning.pytorch.callbacks.LearningRateMonitor",
        "+callbacks.lr.logging_interval=step",
        "+callbacks.mine._target_=mycallbacks.CountSteps",
        f"+callbacks.mine.out={out}",
        home=home,
        extra_env={"PYTHONPATH": str(package)},
    )
    assert done.returncode == 0, done.stderr
    (run,) = all_runs(client)
    run_id = run.info.run_id
    # Lightning's LearningRateMonitor logs through trainlab's Logger, at every step.
    assert [s for s, _ in history(client, run_id, "lr-SGD")] == list(range(30))
    assert {v for _, v in history(client, run_id, "lr-SGD")} == {0.01}
    # The user's callback ran at every step and what it logged reached the run.
    assert out.read_text() == "30"
    assert history(client, run_id, "user/steps")[-1][1] == 30.0
    # Both are part of the recorded config; trainlab's own are listed beside them.
    params = run.data.params
    assert params["callbacks.mine._target_"] == "mycallbacks.CountSteps"
    assert params["callbacks.guard._target_"] == "trainlab.callbacks.DivergenceGuard.for_run"


def test_stochastic_weight_averaging_from_the_command_line(train_in_process, client):
    status, _, err = train_in_process(
        "max_epochs=20",
        "print_every=0",
        "optimizer.lr=0.05",
        "+callbacks.swa._target_=lightning.pytorch.callbacks.StochasticWeightAveraging",
        "+callbacks.swa.swa_lrs=0.01",
        "+callbacks.swa.swa_epoch_start=10",
        "+callbacks.swa.annealing_epochs=1",
    )
    assert status == 0, err
    (run,) = all_runs(client)
    rates = [lr for _, lr in history(client, run.info.run_id, "train/lr")]
    # SWA's scheduler takes over at epoch 10 and holds its own rate after annealing.
    assert rates[:10] == [pytest.approx(0.05)] * 10
    assert rates[-1] == pytest.approx(0.01)


def test_trainlab_callbacks_can_be_removed(train_in_process, client):
    status, out, err = train_in_process("max_epochs=5", "print_every=1", "~callbacks.console")
    assert status == 0, err
    assert "epoch 0," not in out and "Final training loss" in out
    status, out, _ = train_in_process("max_epochs=5", "print_every=1", "callbacks.rows=null")
    assert "epoch 4," in out
    runs = sorted(all_runs(client), key=lambda r: r.info.start_time)
    assert "train/loss" in runs[0].data.metrics and "train/loss" not in runs[1].data.metrics


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("+callbacks.x._target_=no.such.Callback", "callbacks.x: Error locating target"),
        ("+callbacks.x=3", "callbacks.x=3 is not allowed: expected a _target_"),
        ("+callbacks.x._target_=torch.nn.ReLU", "made a ReLU; expected a Lightning Callback"),
        ("+callbacks.x._target_=torch.nn.Linear", "missing 2 required positional arguments"),
    ],
)
def test_a_bad_callback_is_one_line_and_no_run(train_in_process, client, override, expected):
    status, _, err = train_in_process("max_epochs=2", override)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("trainlab-train: error: callbacks.x")
    assert expected in err
    assert all(run.info.status != "RUNNING" for run in all_runs(client))


class Foreign(L.LightningModule):
    """A LightningModule trainlab did not write: its own steps, optimizer and self.log calls."""

    def __init__(self, diverge_at: int | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
        self.diverge_at = diverge_at

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        if self.diverge_at is not None and self.global_step >= self.diverge_at:
            loss = loss * math.inf
        self.log("mine/loss", loss, on_step=True, on_epoch=True)
        self.log("train/loss", loss)  # recorded by the rows already: not twice
        return {"loss": loss}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def foreign_fit(client, tmp_path: Path, module: L.LightningModule, epochs: int):
    """trainlab's callbacks and Logger on a plain Lightning Trainer, recorded for real."""
    recorder = start_recorder(client.tracking_uri)
    spec = RunSpec(
        uri=client.tracking_uri,
        experiment_name="foreign",
        run_name=None,
        tags={},
        artifact_root=str(tmp_path / "artifacts"),
    )
    run = TrackedRun(recorder, spec, flush_seconds=60)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    batches = TensorBatches(x, x.sum(1, keepdim=True), 8, True, 0)
    saver = CommitCheckpoints(
        tmp_path, run, CheckpointConfig(every_n_steps=5), "mine/loss_epoch", Interrupts()
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[StepRows(run), DivergenceGuard(run=run), saver],
        logger=RecorderLogger(run, {"train/loss", "train/lr"}),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    error = None
    try:
        trainer.fit(module, batches)
    except DivergedError as err:
        error = err
    status = EndStatus.FAILED if error else EndStatus.FINISHED
    run.finish(FinalReport(status=status, step=trainer.global_step))
    return run.run_id, error


def test_trainlab_callbacks_watch_a_module_trainlab_did_not_write(home, client, tmp_path):
    run_id, error = foreign_fit(client, tmp_path, Foreign(), epochs=3)
    assert error is None
    steps = list(range(12))  # 32 rows in batches of 8, 3 epochs
    assert [s for s, _ in history(client, run_id, "train/loss")] == steps
    assert len(history(client, run_id, "train/lr")) == 12
    # The module's own self.log values came through the Logger, with Lightning's steps.
    assert [s for s, _ in history(client, run_id, "mine/loss_step")] == steps
    assert [s for s, _ in history(client, run_id, "mine/loss_epoch")] == [3, 7, 11]  # last steps
    mine = [v for _, v in history(client, run_id, "mine/loss_step")]
    assert mine == pytest.approx([v for _, v in history(client, run_id, "train/loss")])
    # Its parameters are recorded under their own names (two layers: no key is shared).
    metrics = client.get_run(run_id).data.metrics
    assert {"net.0.weight/0_0", "net.0.bias/7", "net.2.weight/0_7", "net.2.bias/0"} <= set(metrics)
    tags = client.get_run(run_id).data.tags
    assert tags["trainlab.checkpoint.step"] == "12"  # the last checkpoint committed its rows
    assert (tmp_path / "last.ckpt").is_file()
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert state["trainlab"]["run_id"] == run_id and state["global_step"] == 12


def test_the_guard_stops_a_module_trainlab_did_not_write(home, client, tmp_path):
    run_id, error = foreign_fit(client, tmp_path, Foreign(diverge_at=6), epochs=5)
    assert isinstance(error, DivergedError) and error.step == 6
    run = client.get_run(run_id)
    assert run.data.tags["trainlab.failure"] == "nonfinite_loss"
    assert [s for s, _ in history(client, run_id, "train/loss")] == list(range(7))
