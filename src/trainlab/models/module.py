"""The LightningModule of note 20: it holds the math (forward, loss, the optimizer and scheduler
it wants); the Trainer holds the loop (forward, backward, step, zero_grad); the engines' callback
holds tracking, printing and the guard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import lightning as L
import torch
from hydra.utils import instantiate
from torch import nn

from trainlab.config.schema import TrainConfig


class FitObserver(Protocol):
    """What watches a fit step by step (engines/monitor.py): called from this module's own hooks
    with the Trainer's names and arguments."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None: ...
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None: ...
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None: ...
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None: ...
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None: ...
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None: ...
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None: ...
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None: ...


class RegressionModule(L.LightningModule):
    """Model + loss + optimizer (+ scheduler) for the Lightning Trainer.

    `observer` (set by the Lightning engine for one fit) is called from the module's own hooks,
    not registered as a Callback: Lightning calls every hook of every callback at every step,
    overridden or not (~23 us a step for one callback, 4% of a seed step in a bare Trainer),
    while the module's hooks are called anyway. Exceptions reach it through the data module.
    """

    observer: FitObserver | None = None

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

    def on_train_start(self) -> None:
        if self.observer is not None:
            self.observer.on_train_start(self.trainer, self)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.observer is not None:
            self.observer.on_train_batch_end(self.trainer, self, outputs, batch, batch_idx)

    def on_train_epoch_start(self) -> None:
        if self.observer is not None:
            self.observer.on_train_epoch_start(self.trainer, self)

    def on_train_epoch_end(self) -> None:
        if self.observer is not None:
            self.observer.on_train_epoch_end(self.trainer, self)

    def on_validation_epoch_end(self) -> None:
        if self.observer is not None:
            self.observer.on_validation_epoch_end(self.trainer, self)

    def on_train_end(self) -> None:
        if self.observer is not None:
            self.observer.on_train_end(self.trainer, self)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.observer is not None:
            self.observer.on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.observer is not None:
            self.observer.on_load_checkpoint(checkpoint)

    def configure_optimizers(self) -> Any:
        optimizer = self.make_optimizer(self.parameters())
        if self.make_scheduler is None:
            return optimizer
        scheduler = self.make_scheduler(optimizer)
        config = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = self.monitor
        return {"optimizer": optimizer, "lr_scheduler": config}


class ValidatedRegressionModule(RegressionModule):
    """The same, with a validation split: `val/loss` per validation epoch.

    A separate class rather than a validation_step that finds no data: Lightning asks at every
    training step whether the module overrides validation_step (trainer.enable_validation), and
    that check costs ~3% of a step of the seed; a module without one skips it."""

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        loss = self.loss(self(x), y)
        self.log("val/loss", loss, on_step=False, on_epoch=True, logger=False, sync_dist=True)


def build_module(
    settings: TrainConfig, n_features: int, n_targets: int, has_validation: bool
) -> RegressionModule:
    """The module of a run, every part instantiated from the checked config's `_target_`s."""
    model = instantiate(settings.model, in_features=n_features, out_features=n_targets)
    scheduler = settings.scheduler
    kind = ValidatedRegressionModule if has_validation else RegressionModule
    return kind(
        model=model,
        loss=instantiate(settings.loss),
        optimizer=instantiate(settings.optimizer),
        scheduler=instantiate(scheduler) if scheduler._target_ is not None else None,
        monitor="val/loss" if has_validation else "train/loss",
    )
