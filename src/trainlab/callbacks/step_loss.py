"""The loss of each optimizer step, read from what `training_step` returned: what every callback
that watches steps starts from, for any LightningModule.

With `trainer.accumulate_grad_batches=k` an optimizer step follows k batches and its loss is the
mean of their losses (Lightning hands each batch's loss over divided by k, as it is added into
the gradients; this undoes that), so a NaN in any of them reaches the step. A batch after which
no optimizer step was taken yields nothing; so does a module that returns no loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch


class StepLoss:
    def __init__(self) -> None:
        self.steps_seen = 0
        self.factor = 1
        self.pending: list[torch.Tensor] = []  # losses of batches whose step has not come yet

    def start(self, trainer: L.Trainer) -> None:
        self.steps_seen = trainer.global_step
        self.factor = trainer.accumulate_grad_batches
        self.pending = []

    def after_batch(self, trainer: L.Trainer, outputs: Any) -> torch.Tensor | None:
        """The loss of the optimizer step this batch ended, or None."""
        # Read once: every property of the Trainer is a chain of calls, and this runs per step.
        step = trainer.global_step
        loss = outputs.get("loss") if isinstance(outputs, dict | Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            loss = None
        elif self.factor > 1:
            loss = loss.detach() * self.factor
        if step == self.steps_seen:  # no optimizer step after this batch
            if loss is not None:
                self.pending.append(loss.detach())
            return None
        self.steps_seen = step
        if self.pending and loss is not None:
            loss = torch.stack([*self.pending, loss.detach()]).mean()
        self.pending = []
        return loss


def learning_rate(trainer: L.Trainer) -> float | None:
    """The first optimizer's current learning rate (a Python float: no device sync)."""
    optimizers = trainer.optimizers
    return optimizers[0].param_groups[0]["lr"] if optimizers else None


EPOCH_LOSS = "train/epoch_loss"  # FitResult.logged's key for EpochLoss's mean


class EpochLoss(L.Callback):
    """The mean of the losses `training_step` returned over the last training epoch: the final
    training loss of a LightningModule of the user's, whose batches trainlab does not unpack.
    The sum stays a tensor on the module's device until the epoch ends (no sync per step)."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0
        self.mean: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.total, self.count = None, 0

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            loss = loss.detach().float()
            self.total = loss if self.total is None else self.total + loss
            self.count += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.total is not None and self.count:
            self.mean = float(self.total) / self.count
