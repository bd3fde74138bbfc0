"""trainlab's LightningModule for classification: the same math as the regression module (model,
loss, optimizer, scheduler), with labels as targets and the epoch's accuracy, F1 and ROC AUC.

Targets are class indices. `cross_entropy` takes one output per class; `bce_with_logits` one
output for two classes (its sigmoid is the second class's probability). The metrics are
torchmetrics' (Lightning's own metrics library) on the class probabilities, updated at each step,
computed once at the epoch's end and given to `self.log` there, so they reach the run through its
Logger as `train/accuracy`, `train/f1` (macro), `train/roc_auc` (macro, one class against the
rest) and `val/...`, at the epoch's last step; under DDP torchmetrics gathers them over the ranks
in `compute`. Logged once per epoch rather than at every step (Lightning's idiom of logging the
Metric objects at each step): `self.log` walks its values and Lightning's result collection at
every call, which on a small network is a large part of the step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score

from trainlab.models.lightning_module import TrainlabModule


def epoch_metrics(classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes=classes, average="micro"),
            "f1": MulticlassF1Score(num_classes=classes, average="macro"),
            "roc_auc": MulticlassAUROC(num_classes=classes, average="macro"),
        },
        prefix=prefix,
    )


class ClassificationModule(TrainlabModule):
    def __init__(self, *args: Any, classes: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.classes = tuple(classes)
        self.binary = isinstance(self.loss, nn.BCEWithLogitsLoss)
        self.train_metrics = epoch_metrics(max(len(self.classes), 2), "train/")

    def compute_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.binary:
            return self.loss(output.reshape(-1), target.to(output.dtype))
        return self.loss(output, target)

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        """One probability per class, for every row."""
        if self.binary:
            positive = torch.sigmoid(output.reshape(-1))
            return torch.stack([1 - positive, positive], dim=1)
        return torch.softmax(output, dim=1)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        output = self(x)
        loss = self.compute_loss(output, y)
        self.after_loss(loss)
        with torch.no_grad():
            self.train_metrics.update(self.probabilities(output.detach()), y)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_epoch(self.train_metrics)

    def log_epoch(self, metrics: MetricCollection) -> None:
        """The epoch's values of `metrics`, logged once, and the metrics reset for the next."""
        self.log_dict(metrics.compute(), on_step=False, on_epoch=True)
        metrics.reset()


class ValidatedClassificationModule(ClassificationModule):
    """The same with a validation split (see ValidatedRegressionModule for why a class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.val_metrics = epoch_metrics(max(len(self.classes), 2), "val/")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        output = self(x)
        loss = self.compute_loss(output, y)
        self.log("val/loss", loss, on_step=False, on_epoch=True, logger=False, sync_dist=True)
        self.val_metrics.update(self.probabilities(output), y)

    def on_validation_epoch_end(self) -> None:
        self.log_epoch(self.val_metrics)
