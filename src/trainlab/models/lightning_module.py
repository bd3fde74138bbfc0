"""trainlab's LightningModule: it holds the math (forward, loss, the optimizer and scheduler
it wants); the Trainer holds the loop (forward, backward, step, zero_grad); callbacks hold what
cuts across (tracking, printing, the guard, checkpoints: trainlab.callbacks), so they work the
same for a LightningModule trainlab did not write (`model=custom`, models/user_model.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn


class TrainlabModule(L.LightningModule):
    """Model + loss + optimizer (+ scheduler) for the Lightning Trainer."""

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        plateau_metric: str = "train/loss",
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.make_optimizer = optimizer
        self.make_scheduler = scheduler
        self.plateau_metric = plateau_metric  # what ReduceLROnPlateau watches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def compute_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(output, target)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        loss = self.compute_loss(self(x), y)
        self.after_loss(loss)
        return loss

    def after_loss(self, loss: torch.Tensor) -> None:
        if self.make_scheduler is not None and self.plateau_metric == "train/loss":
            # ReduceLROnPlateau reads its metric from the Trainer's callback metrics; only
            # then is train/loss given to self.log (the run's rows have their own cheaper path).
            # sync_dist: under DDP every rank's scheduler must see the same (global) loss.
            self.log("train/loss", loss, on_step=False, on_epoch=True, logger=False, sync_dist=True)

    def configure_optimizers(self) -> Any:
        optimizer = self.make_optimizer(self.parameters())
        if self.make_scheduler is None:
            return optimizer
        scheduler = self.make_scheduler(optimizer)
        config = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = self.plateau_metric
        return {"optimizer": optimizer, "lr_scheduler": config}


class RegressionModule(TrainlabModule):
    """Numbers in, numbers out (the seed's task)."""


class ValidatedRegressionModule(RegressionModule):
    """The same, with a validation split: `val/loss` per validation epoch (for the callbacks:
    the run's rows record it at the epoch's last step, early stopping and checkpoints rank by it).

    A separate class rather than a validation_step that finds no data: Lightning asks at every
    training step whether the module overrides validation_step (trainer.enable_validation), and
    that check is a measurable part of a small model's step; a module without one skips it."""

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        loss = self.compute_loss(self(x), y)
        self.log("val/loss", loss, on_step=False, on_epoch=True, logger=False, sync_dist=True)
