"""The loops trainlab is measured against, written here so the benchmark owns its baselines.

- `raw_seed_loop`: note 20 of the seed notes, verbatim minus the prints.
- `raw_big_data_epoch`: one epoch over in-memory tensors, shuffled, sliced in batches.
- `naive_stack`: what most people write first: Lightning + DataLoader(TensorDataset) +
  `self.log` every step + Lightning's MLFlowLogger on SQLite.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.profilers import Profiler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

# The same in-memory batcher for the floor as for trainlab: the floor measures the Trainer alone.
from trainlab.data.batches import TensorBatches

__all__ = ["TensorBatches"]


def seed_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor([[1], [2], [3], [4]], dtype=torch.float32)
    return x, 2 * x


def raw_seed_loop(steps: int) -> float:
    """Seconds for `steps` iterations of note 20's loop (forward, loss, backward, step, zero_grad)."""
    x, y = seed_tensors()
    model = nn.Linear(1, 1)
    loss = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    start = time.perf_counter()
    for _ in range(steps):
        y_pred = model(x)
        value = loss(y, y_pred)
        value.backward()
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def raw_big_data_epoch(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0) -> float:
    """Seconds for one shuffled epoch of a linear model over (x, y), batches sliced from tensors."""
    model = nn.Linear(x.shape[1], y.shape[1]).to(x.device)
    loss = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(seed)
    _sync(x)
    start = time.perf_counter()
    order = torch.randperm(len(x), generator=generator).to(x.device)
    for begin in range(0, len(x), batch_size):
        index = order[begin : begin + batch_size]
        value = loss(model(x[index]), y[index])
        value.backward()
        optimizer.step()
        optimizer.zero_grad()
    _sync(x)
    return time.perf_counter() - start


def _sync(t: torch.Tensor) -> None:
    if t.is_cuda:
        torch.cuda.synchronize()


class _NaiveModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(1, 1)
        self.loss = nn.MSELoss()

    def training_step(self, batch, batch_idx):
        x, y = batch
        value = self.loss(self.lin(x), y)
        self.log("train/loss", value)
        self.log("weight", self.lin.weight.reshape(()))
        self.log("bias", self.lin.bias.reshape(()))
        return value

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def naive_stack(steps: int, store: Path) -> float:
    """Seconds for `steps` one-batch epochs of the naive stack, tracked in a SQLite store."""
    from lightning.pytorch.loggers import MLFlowLogger

    x, y = seed_tensors()
    start = time.perf_counter()  # from building the logger and Trainer, as trainlab is timed
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    logger = MLFlowLogger(experiment_name="naive", tracking_uri=f"sqlite:///{store}")
    trainer = L.Trainer(
        max_epochs=steps,
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(_NaiveModule(), loader)
    return time.perf_counter() - start


class _BareModule(L.LightningModule):
    """The least a LightningModule can be: the floor under any Trainer-based tool."""

    def __init__(self, n_features: int, n_targets: int) -> None:
        super().__init__()
        self.lin = nn.Linear(n_features, n_targets)
        self.loss = nn.MSELoss()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss(self.lin(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class _Idle(L.Callback):
    """A callback that does nothing: what Lightning's dispatch of one callback costs."""


def lightning_floor(
    batches,
    epochs: int,
    n_features: int,
    n_targets: int,
    device: str,
    callbacks: int = 0,
    profiler: Profiler | None = None,
) -> float:
    """Seconds to build Lightning's Trainer (barebones=True) and fit a bare module over `batches`
    (with `callbacks` do-nothing callbacks: the price of the callback form alone). With a
    `profiler` (which barebones refuses) the Trainer has everything barebones turns off off."""
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # barebones lists its limits
    bare: dict[str, Any] = {"barebones": True}
    if profiler is not None:
        bare = {
            "profiler": profiler,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 0,
        }
    start = time.perf_counter()  # from building the Trainer, as trainlab is timed
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        callbacks=[_Idle() for _ in range(callbacks)],
        **bare,
    )
    trainer.fit(_BareModule(n_features, n_targets), batches)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def mlflow_floor(store: Path, steps: int, keys: int) -> float:
    """Seconds for MLflow alone to store `steps` x `keys` metrics in log_batch requests of 1000."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("floor") or client.get_experiment(
        client.create_experiment("floor")
    )
    run = client.create_run(experiment.experiment_id)
    metrics = [Metric(f"k{k}", float(s), 0, s) for s in range(steps) for k in range(keys)]
    start = time.perf_counter()
    for begin in range(0, len(metrics), 1000):
        client.log_batch(run.info.run_id, metrics=metrics[begin : begin + 1000])
    elapsed = time.perf_counter() - start
    client.set_terminated(run.info.run_id)
    return elapsed
