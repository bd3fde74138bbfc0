"""The model of note 20 and the LightningModule that trains it.

The module holds the math (forward, loss, the optimizer and scheduler it wants); the Trainer
holds the loop (forward, backward, step, zero_grad); callbacks hold tracking and printing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn


class LinearRegression(nn.Module):
    """`nn.Linear(input_dim, output_dim)`, as in note 20, with a choice of starting weights."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: str = "default",
        init_value: float = 0.0,
    ) -> None:
        super().__init__()
        self.lin = nn.Linear(in_features, out_features, bias=bias)
        if init != "default":
            value = 0.0 if init == "zeros" else init_value
            with torch.no_grad():
                for param in self.lin.parameters():
                    param.fill_(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


class RegressionModule(L.LightningModule):
    """Model + loss + optimizer (+ scheduler) for the Lightning Trainer."""

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        monitor: str = "train/loss",
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.make_optimizer = optimizer
        self.make_scheduler = scheduler
        self.monitor = monitor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self(x), y)
        if self.make_scheduler is not None and self.monitor == "train/loss":
            # ReduceLROnPlateau reads its metric from the Trainer's callback metrics; only
            # then is train/loss given to self.log (tracking has its own cheaper path).
            # sync_dist: under DDP every rank's scheduler must see the same (global) loss.
            self.log("train/loss", loss, on_step=False, on_epoch=True, logger=False, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        loss = self.loss(self(x), y)
        self.log("val/loss", loss, on_step=False, on_epoch=True, logger=False, sync_dist=True)

    def configure_optimizers(self) -> Any:
        optimizer = self.make_optimizer(self.parameters())
        if self.make_scheduler is None:
            return optimizer
        scheduler = self.make_scheduler(optimizer)
        config = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = self.monitor
        return {"optimizer": optimizer, "lr_scheduler": config}
