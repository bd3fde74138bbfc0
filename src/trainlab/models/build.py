"""The module of a run, built from the checked config's `_target_`s and the data's shape."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object

from trainlab.config.construct import construct
from trainlab.config.schema import TrainConfig
from trainlab.config.training import CLASSIFICATION, BCEWithLogitsLossConfig, task_of
from trainlab.data.custom import check_pairs
from trainlab.data.dataset import Dataset
from trainlab.errors import ConfigError
from trainlab.models.classifier import ClassificationModule, ValidatedClassificationModule
from trainlab.models.lightning_module import RegressionModule, ValidatedRegressionModule
from trainlab.models.linear import LinearRegression
from trainlab.models.user_model import is_lightning_module
from trainlab.user_classes import quiet_logger


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


def shape_arguments(settings: TrainConfig, data: Dataset) -> dict[str, Any]:
    """What the data says of a model's shapes, offered to its constructor: `in_features` (one
    input, flattened: a table's columns), `in_channels` and `in_shape` for inputs of higher rank
    (images (C, H, W), sequences (T, F)), `out_features` (targets, or classes). A model takes
    the ones its constructor names; where the batches are no (inputs, targets) pair there are
    none but the classes."""
    shapes: dict[str, Any] = {}
    x = data.x_train
    if x is not None:
        shapes["in_features"] = data.n_features
        shapes["in_shape"] = tuple(x.shape[1:])
        if x.ndim >= 3:
            shapes["in_channels"] = int(x.shape[1])
    if data.y_train is not None or (data.classes and task_of(settings.loss) == CLASSIFICATION):
        shapes["out_features"] = output_size(settings, data)
    return shapes


def build_module(settings: TrainConfig, data: Dataset) -> L.LightningModule:
    """trainlab's LightningModule around the model, or the user's own LightningModule."""
    has_validation = data.x_val is not None or data.val_sample is not None
    if not names_lightning_module(settings.model):
        dtype = torch.float64 if settings.device.precision == "64" else torch.float32
        check_pairs(data, task_of(settings.loss), model_name(settings.model), dtype)
    try:
        shapes = taken_by(settings.model, shape_arguments(settings, data))
        # Lists and dicts reach the classes as Python lists and dicts (no `_convert_` to write).
        model = construct(settings.model, **shapes)
    except InstantiationException as err:
        if isinstance(err.__cause__, ConfigError):  # said by the builder, in one line
            raise err.__cause__ from None
        raise
    if is_lightning_module(model):
        return model
    scheduler = settings.scheduler
    parts = {
        "model": model,
        "loss": construct(settings.loss),
        "optimizer": construct(settings.optimizer),
        "scheduler": construct(scheduler) if scheduler._target_ is not None else None,
        "plateau_metric": "val/loss" if has_validation else "train/loss",
    }
    if task_of(settings.loss) == CLASSIFICATION:
        kind = ValidatedClassificationModule if has_validation else ClassificationModule
        return kind(**parts, classes=data.classes)
    kind = ValidatedRegressionModule if has_validation else RegressionModule
    return kind(**parts)


def names_lightning_module(model: Any) -> bool:
    """model=custom naming a LightningModule: it reads its own batches."""
    target = getattr(model, "target", None)
    if not isinstance(target, str):
        return False
    with quiet_logger("hydra.utils"):
        try:
            cls = get_object(target)
        except Exception:  # said in one line when the model is built
            return False
    return isinstance(cls, type) and issubclass(cls, L.LightningModule)


def model_name(model: Any) -> str:
    target = getattr(model, "target", None) or model._target_
    return str(target).rsplit(".", 1)[-1]


def taken_by(model: Any, shapes: dict[str, Any]) -> dict[str, Any]:
    """The shape arguments the model's builder takes (all of them where it takes **kwargs)."""
    builder = get_object(model._target_)
    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return shapes
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return shapes
    return {k: v for k, v in shapes.items() if k in parameters}


def loss_of(settings: TrainConfig, module: L.LightningModule) -> Callable[..., torch.Tensor]:
    """How the run's loss is computed from the module's output: trainlab's module knows; for a
    module of the user's, the configured loss (bce_with_logits on the single output)."""
    compute = getattr(module, "compute_loss", None)
    if compute is not None:
        return compute
    loss = construct(settings.loss)
    if isinstance(settings.loss, BCEWithLogitsLossConfig):
        return lambda output, target: loss(output.reshape(-1), target.to(output.dtype))
    return loss


def is_linear_model(module: L.LightningModule) -> bool:
    """The seed's kind of model: its weights are recorded one by one, references apply."""
    return isinstance(getattr(module, "model", None), LinearRegression)
