"""What a run predicts and prints around its fit: the `x_test` rows before and after training,
the final losses, and the lines that end a run (the outcome, where it is recorded, how to use it).

Regression predictions are the model's outputs; classification ones the class probabilities,
printed as the most probable class (`f(5.1, 3.5, 1.4, 0.2) = setosa (0.98)`) and recorded as
`pred/after/<row>_<class>`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import lightning as L
import torch

from trainlab.callbacks.step_loss import EPOCH_LOSS
from trainlab.config.checks import parse_x_test
from trainlab.config.runtime import SweepConfig
from trainlab.config.schema import TrainConfig
from trainlab.console import format_prediction
from trainlab.data.custom import batches, implements
from trainlab.data.dataset import Dataset
from trainlab.data.samples import shapes_of
from trainlab.errors import ConfigError
from trainlab.measures.references import References
from trainlab.models.lightning_module import TrainlabModule
from trainlab.tracking.messages import RunInfo
from trainlab.tracking.store_checks import dashboard_line


def prediction_rows(settings: TrainConfig, data: Dataset) -> torch.Tensor | None:
    """`x_test` (the rows predicted before and after training) as an (n, n_features) tensor."""
    if settings.x_test is None:
        return None
    if not data.is_table:
        raise ConfigError(
            f"x_test={settings.x_test!r}: the data's inputs are no rows of features "
            f"({shapes_of(data.sample)}); expected x_test=null (predict with trainlab-predict)"
        )
    assert data.x_train is not None
    rows = parse_x_test(settings.x_test, data.n_features)
    return torch.tensor(rows, dtype=data.x_train.dtype)


def predict(
    module: L.LightningModule, data: Dataset, x: torch.Tensor | None
) -> torch.Tensor | None:
    """The model's output for raw input rows (scaled as the training rows were): class
    probabilities for a classifier."""
    if x is None:
        return None
    with torch.no_grad():
        output = module.to("cpu")(data.scale(x))
        probabilities = getattr(module, "probabilities", None)
        return probabilities(output) if probabilities is not None and data.classes else output


# A module's own end value of its training loss, in the order trainlab prefers them.
TRAIN_LOSS_NAMES = ("train/loss_epoch", "train/loss", EPOCH_LOSS)


def prediction_metrics(pred: torch.Tensor, prefix: str) -> dict[str, float]:
    """`pred/after` for one prediction, `pred/after/<row>_<target>` for several."""
    if pred.numel() == 1:
        return {prefix: pred.item()}
    return {
        f"{prefix}/{r}_{t}": v for r, row in enumerate(pred.tolist()) for t, v in enumerate(row)
    }


def first_metrics(before: torch.Tensor | None, refs: References) -> dict[str, float]:
    """What a new run logs at step 0: the references and the prediction before training."""
    metrics = {"ols/loss": refs.ols_loss} if refs.ols_loss is not None else {}
    if refs.optimum is not None:
        metrics["optimum/loss"] = refs.optimum.loss
    return {**metrics, **(prediction_metrics(before, "pred/before") if before is not None else {})}


def final_losses(
    module: L.LightningModule,
    data: Dataset,
    compute: Callable[..., torch.Tensor],
    logged: dict[str, float],
) -> dict[str, float]:
    """Loss over the whole training (and validation) set with the trained weights, where
    trainlab can compute it (its own module; a user's module on (inputs, targets) batches whose
    outputs the configured loss takes); else what the module's own steps gave (`logged`)."""
    module = module.to("cpu")
    if data.datamodule is not None:
        if not scorable(module, data, compute):
            return logged_losses(logged)
        return loader_losses(module, data.datamodule, compute)
    with torch.no_grad():
        losses = {"final/train_loss": compute(module(data.x_train), data.y_train).item()}
        if data.x_val is not None and data.y_val is not None:
            losses["final/val_loss"] = compute(module(data.x_val), data.y_val).item()
    return losses


def loader_losses(
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    compute: Callable[..., torch.Tensor],
) -> dict[str, float]:
    """The same over a datamodule's loaders: each batch's mean loss weighted by its rows, which
    is the mean over all rows for the losses trainlab has (mean reduction)."""
    stages = {"train": "final/train_loss", "val": "final/val_loss"}
    losses = {}
    with torch.no_grad():
        for stage, name in stages.items():
            if stage == "val" and not implements(datamodule, "val"):
                continue
            total, rows = 0.0, 0
            for x, y in batches(datamodule, stage):
                inputs = x.to(module.dtype) if x.is_floating_point() else x  # token ids stay
                total += compute(module(inputs), y).item() * len(x)
                rows += len(x)
            losses[name] = total / rows
    return losses


def scorable(
    module: L.LightningModule, data: Dataset, compute: Callable[..., torch.Tensor]
) -> bool:
    """Whether the configured loss takes the module's outputs for the sample's targets: always
    for trainlab's own module; for a user's, tried on the sample's first rows."""
    if isinstance(module, TrainlabModule):
        return True
    if data.x_train is None or data.y_train is None:
        return False
    x, y = data.x_train[:2], data.y_train[:2]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error")  # a broadcast mismatch warns before it is wrong
            output = module(x.to(module.dtype) if x.is_floating_point() else x)
            if not isinstance(output, torch.Tensor):
                return False
            if y.is_floating_point() and output.shape != y.shape:
                return False
            compute(output, y)
    except Exception:
        return False
    return True


def logged_losses(logged: dict[str, float]) -> dict[str, float]:
    """A module's own end values as the run's final losses: its epoch train/loss (or the mean
    loss its steps returned in the last epoch) and its val/loss."""
    losses = {}
    train = next((logged[k] for k in TRAIN_LOSS_NAMES if k in logged), None)
    if train is not None:
        losses["final/train_loss"] = train
    if "val/loss" in logged:
        losses["final/val_loss"] = logged["val/loss"]
    return losses


def objective_of(sweep: SweepConfig, final: dict[str, float], logged: dict[str, float]) -> float:
    """What a sweeper ranks the job by: `sweep.objective` (a final metric, or one the module
    logged), by default the final val loss, else the final train loss. An objective the run
    never logged is one line."""
    name = sweep.objective
    if name is None:
        value = final.get("final/val_loss", final.get("final/train_loss"))
        return float("nan") if value is None else value
    for candidates in (final, logged):
        if name in candidates:
            return float(candidates[name])
    known = sorted({*final, *logged} - {EPOCH_LOSS})
    raise ConfigError(
        f"sweep.objective={name!r}: the run never logged it; expected one of the metrics it "
        f"logged: {', '.join(known) or '(none)'}"
    )


def spec(settings: TrainConfig) -> str:
    """Each engine prints its note's way: note 20 (Lightning) .3f, notes 17/18 the whole float."""
    return " .3f" if settings.engine.name == "lightning" else " .7g"


def describe(x: torch.Tensor, pred: torch.Tensor, settings: TrainConfig, data: Dataset) -> str:
    if not data.classes:
        return format_prediction(x, pred, spec(settings))
    parts = []
    for row, probabilities in zip(x.tolist(), pred.tolist(), strict=True):
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        values = ", ".join(f"{v:g}" for v in row)
        parts.append(f"f({values}) = {data.classes[best]} ({probabilities[best]:.3g})")
    return "; ".join(parts)


def predict_hint(settings: TrainConfig, data: Dataset, run_id: str) -> str:
    """How to ask the logged model: rows of numbers for a table, image files for images."""
    if data.is_table:
        return f"trainlab-predict {run_id} <x> ..."
    if hasattr(settings.data, "image_size") or (
        data.x_train is not None and data.x_train.ndim == 4
    ):
        return f"trainlab-predict {run_id} --image FILE ..."
    return f"mlflow.pyfunc.load_model('runs:/{run_id}/model').predict(...)"


def print_before(
    settings: TrainConfig, data: Dataset, x: torch.Tensor, before: torch.Tensor
) -> None:
    print(f"Prediction before training: {describe(x, before, settings, data)}")


def print_outcome(
    settings: TrainConfig,
    data: Dataset,
    x_test: torch.Tensor | None,
    after: torch.Tensor | None,
    losses: dict[str, float],
    refs: References,
    info: RunInfo | None,
) -> None:
    if x_test is not None and after is not None:
        print(f"Prediction after training: {describe(x_test, after, settings, data)}")
    train = losses.get("final/train_loss")
    if train is not None:
        print(f"Final training loss: {train:.6g}")
    if refs.ols_loss is not None and train is not None:
        print(f"Least-squares optimum: {refs.ols_loss:.6g} (gap {train - refs.ols_loss:.3g})")
    if refs.optimum is not None:
        # With decay the objective is the loss plus its penalty: the optimum can exceed the loss.
        penalty = " (the loss + weight_decay/2 |w|^2)" if refs.optimum.penalty else ""
        print(f"Optimum of the objective{penalty}: {refs.optimum.loss:.6g} (optimum/gap per step)")
    if info is None:
        return
    print(
        f"MLflow run {info.run_id} ({info.run_name}) in experiment {info.experiment_id}, store {info.uri}"
    )
    print(dashboard_line(info.uri, info.experiment_id, info.run_id))
    if info.model_uri is not None:
        print(f"Model {info.model_uri}; predict with: {predict_hint(settings, data, info.run_id)}")
    for line in info.verification:
        print(line)
    for warning in info.warnings:
        print(f"trainlab-train: warning: {warning}")
