"""The module of a run, built from the checked config's `_target_`s and the data's shape."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from trainlab.config.schema import TrainConfig
from trainlab.config.training import CLASSIFICATION, BCEWithLogitsLossConfig, task_of
from trainlab.data.dataset import Dataset
from trainlab.errors import ConfigError
from trainlab.models.classifier import ClassificationModule, ValidatedClassificationModule
from trainlab.models.custom import is_lightning_module
from trainlab.models.linear import LinearRegression
from trainlab.models.module import RegressionModule, ValidatedRegressionModule


def output_size(settings: TrainConfig, data: Dataset) -> int:
    """What the model outputs per row: one value per target; per class (cross_entropy); one for
    two classes (bce_with_logits)."""
    if task_of(settings.loss) != CLASSIFICATION:
        return data.n_targets
    if isinstance(settings.loss, BCEWithLogitsLossConfig):
        if len(data.classes) != 2:
            raise ConfigError(
                f"loss=bce_with_logits separates two classes; the data has {len(data.classes)} "
                f"({', '.join(data.classes)}); expected loss=cross_entropy for more"
            )
        return 1
    return len(data.classes)


def build_module(settings: TrainConfig, data: Dataset) -> L.LightningModule:
    """trainlab's LightningModule around the model, or the user's own LightningModule."""
    has_validation = data.x_val is not None
    try:
        model = instantiate(
            settings.model, in_features=data.n_features, out_features=output_size(settings, data)
        )
    except InstantiationException as err:
        if isinstance(err.__cause__, ConfigError):  # said by the builder, in one line
            raise err.__cause__ from None
        raise
    if is_lightning_module(model):
        return model
    scheduler = settings.scheduler
    parts = {
        "model": model,
        "loss": instantiate(settings.loss),
        "optimizer": instantiate(settings.optimizer),
        "scheduler": instantiate(scheduler) if scheduler._target_ is not None else None,
        "plateau_metric": "val/loss" if has_validation else "train/loss",
    }
    if task_of(settings.loss) == CLASSIFICATION:
        kind = ValidatedClassificationModule if has_validation else ClassificationModule
        return kind(**parts, classes=data.classes)
    kind = ValidatedRegressionModule if has_validation else RegressionModule
    return kind(**parts)


def loss_of(settings: TrainConfig, module: L.LightningModule) -> Callable[..., torch.Tensor]:
    """How the run's loss is computed from the module's output: trainlab's module knows; for a
    module of the user's, the configured loss (bce_with_logits on the single output)."""
    compute = getattr(module, "compute_loss", None)
    if compute is not None:
        return compute
    loss = instantiate(settings.loss)
    if isinstance(settings.loss, BCEWithLogitsLossConfig):
        return lambda output, target: loss(output.reshape(-1), target.to(output.dtype))
    return loss


def is_linear_model(module: L.LightningModule) -> bool:
    """The seed's kind of model: its weights are recorded one by one, references apply."""
    return isinstance(getattr(module, "model", None), LinearRegression)
