"""What a finished run hands its recorder besides metrics (tracking/payloads.py): a sample of the
rows with the trained model's predictions for the plots, the model as it is served, and the
held-out rows (data.test_split) with its predictions, which the recorder scores.

The served model takes the raw numbers a person types: the trained network behind the
standardization it was trained with; a classifier's answers one probability per class. A
LightningModule of the user's is served whole (its forward is its model).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from trainlab.config.runtime import TrackingConfig
from trainlab.config.schema import TrainConfig, as_plain_dict
from trainlab.data.custom import test_rows
from trainlab.data.dataset import Dataset
from trainlab.models.build import shape_arguments, taken_by
from trainlab.models.linear import ClassProbabilities, StandardizedModel
from trainlab.models.portable import to_bytes
from trainlab.models.weights import served_as
from trainlab.tracking.payloads import Evaluation, ModelPayload, PlotData

EVALUATION_BATCH = 4096  # held-out rows scored this many at a time (images are large)
PLOT_ROWS = 2000  # the fit and residual plots show at most this many rows of each split


def network_of(module: L.LightningModule) -> nn.Module:
    """The model inside trainlab's LightningModule; a user's LightningModule is its own."""
    return getattr(module, "model", module)


def answers(network: nn.Module, data: Dataset) -> nn.Module:
    """What the network's outputs are served as: class probabilities for a classifier."""
    return ClassProbabilities(network).eval() if data.classes else network


def plot_data(data: Dataset | None, module: L.LightningModule | None) -> PlotData:
    """A sample of the rows, in raw units, with the trained network's predictions: where the
    batches are (inputs, targets) pairs whose outputs the targets can be set against (the fit
    and residuals of a table's rows; the confusion matrix of a classifier on any inputs)."""
    if data is None or module is None or not comparable(data, module):
        return PlotData(x={}, y={}, predicted={}, feature_names=[], target_names=[])
    assert data.x_train is not None and data.y_train is not None
    network = answers(network_of(module).to("cpu"), data)
    splits = {"train": (data.x_train, data.y_train)}
    if data.x_val is not None and data.y_val is not None:
        splits["validation"] = (data.x_val, data.y_val)
    x, y, predicted = {}, {}, {}
    for name, (rows, targets) in splits.items():
        rows, targets = rows[:PLOT_ROWS], targets[:PLOT_ROWS]
        with torch.no_grad():
            predicted[name] = network(as_input(rows, network)).double().numpy()
        # Inputs that are no rows of features (images, sequences) have no columns to plot.
        x[name] = data.unscale(rows.double()).numpy() if data.is_table else np.zeros((len(rows), 0))
        y[name] = targets.double().numpy()
    return PlotData(
        x=x,
        y=y,
        predicted=predicted,
        feature_names=data.feature_names,
        target_names=data.target_names,
        classes=data.classes,
    )


def comparable(data: Dataset, module: L.LightningModule) -> bool:
    """Whether the model's answers for the sample's inputs can be set against its targets: a
    classifier's one score per class, a regression's one value per target."""
    if data.x_train is None or data.y_train is None:
        return False
    try:
        with torch.no_grad():
            output = network_of(module).to("cpu")(as_input(data.x_train[:2], network_of(module)))
    except Exception:  # a forward that does not take the inputs alone (a user's module)
        return False
    if not isinstance(output, torch.Tensor):
        return False
    if data.classes:
        width = 1 if len(data.classes) == 2 and output.shape[-1] == 1 else len(data.classes)
        return output.shape == (2, width) and data.y_train.ndim == 1
    return output.shape == data.y_train[:2].shape


def as_input(x: torch.Tensor, network: nn.Module) -> torch.Tensor:
    """Rows in the network's dtype (float inputs; token ids stay integers)."""
    if not x.is_floating_point():
        return x
    parameter = next(network.parameters(), None)
    return x.to(parameter.dtype) if parameter is not None else x


def servable_model(network: nn.Module, data: Dataset) -> StandardizedModel:
    """A CPU copy of the trained network with the data's standardization (identity when off)."""
    network = answers(network.to("cpu"), data)
    dtype = next(network.parameters()).dtype
    ones = torch.ones(data.n_features, dtype=dtype)
    mean = data.x_mean.to(dtype) if data.x_mean is not None else torch.zeros_like(ones)
    std = data.x_std.to(dtype) if data.x_std is not None else ones
    return StandardizedModel(network, mean.clone(), std.clone()).eval()


def rebuild_spec(settings: TrainConfig, data: Dataset) -> dict[str, Any]:
    """What builds the trained network again from the run's config (models/weights.py, for a
    model torch.export cannot export): its `model` group, as config/resolved.yaml records it,
    and the shape arguments the data gave its constructor (models/build.py)."""
    shapes = taken_by(settings.model, shape_arguments(settings, data))
    return {"model": as_plain_dict(settings)["model"], "shapes": shapes}


def model_payload(
    data: Dataset | None,
    module: L.LightningModule,
    tracking: TrackingConfig,
    rebuild: dict[str, Any] | None = None,
) -> ModelPayload | None:
    """The model as it is served, or None where its input is not one tensor (a module of the
    user's whose forward does not take its batches' inputs alone)."""
    assert data is not None
    if not data.is_table:
        return tensor_model_payload(data, module, tracking, rebuild)
    assert data.x_train is not None
    model = servable_model(network_of(module), data)
    # A few raw training rows; at least two, so that torch.export keeps the batch size free.
    rows = data.unscale(data.x_train[:5].to("cpu")).to(model.mean.dtype)
    rows = rows if len(rows) > 1 else rows.repeat(2, 1)
    try:
        with torch.no_grad():
            output = model(rows).numpy()
    except Exception:  # a user's module whose forward does not take the inputs alone
        return None
    return payload(model, rows, output, data, tracking, rebuild=rebuild)


def tensor_model_payload(
    data: Dataset,
    module: L.LightningModule,
    tracking: TrackingConfig,
    rebuild: dict[str, Any] | None = None,
) -> ModelPayload | None:
    """Inputs of any rank (images, sequences, token ids): the network as it is (a classifier's
    answers as probabilities where its outputs are one score per class), its example the
    sample's inputs: the pair's inputs, or a batch that is one tensor."""
    inputs = data.x_train if data.x_train is not None else data.sample
    if not isinstance(inputs, torch.Tensor):
        return None  # MLflow's PyTorch flavor takes one array; a dict batch has no such input
    scored = comparable(data, module)
    network = network_of(module).to("cpu")
    network = answers(network, data) if scored else network
    rows = as_input(inputs[:5].detach().cpu(), network)
    rows = rows if len(rows) > 1 else torch.cat([rows, rows])  # torch.export: a free batch size
    try:
        with torch.no_grad():
            output = network.eval()(rows)
    except Exception:  # its forward does not take the inputs alone
        return None
    if not isinstance(output, torch.Tensor):
        return None
    classes = data.classes if scored else ()
    return payload(network, rows, output.numpy(), data, tracking, classes, rebuild)


def payload(
    model: nn.Module,
    rows: torch.Tensor,
    output: np.ndarray,
    data: Dataset,
    tracking: TrackingConfig,
    classes: tuple[str, ...] | None = None,
    rebuild: dict[str, Any] | None = None,
) -> ModelPayload:
    return ModelPayload(
        # As bytes with its classes: the recorder process may not import a user's package.
        module=to_bytes(model),
        example=np.asarray(rows.numpy()),
        output=output,
        feature_names=data.feature_names,
        target_names=data.target_names,
        register=tracking.register,
        alias=tracking.alias,
        format=tracking.model_format,
        classes=data.classes if classes is None else classes,
        # What the served module wraps around the network the config builds: known here, where
        # trainlab's classes are the imported ones (the recorder's are unpickled copies).
        rebuild=None if rebuild is None else {**rebuild, "served_as": served_as(model)[0]},
    )


def evaluation(data: Dataset | None, module: L.LightningModule | None) -> Evaluation | None:
    """The held-out rows' targets and the trained model's predictions for them, or None."""
    if data is None or module is None or not comparable(data, module):
        return None
    held_out = test_rows(data.datamodule) if data.datamodule is not None else None
    x_test, y_test = held_out if held_out is not None else (data.x_test, data.y_test)
    if x_test is None or y_test is None:
        return None
    network = answers(network_of(module).to("cpu"), data)
    with torch.no_grad():
        predicted = np.concatenate(
            [
                network(as_input(part, network)).double().numpy()
                for part in x_test.split(EVALUATION_BATCH)
            ]
        )
    if data.classes:  # float32 softmax rows sum to 1 within 1e-7; scikit-learn's log loss warns
        predicted = predicted / predicted.sum(axis=1, keepdims=True)
    targets = y_test.numpy() if data.classes else y_test.double().numpy()
    return Evaluation(
        targets=targets,
        predicted=predicted,
        target_names=data.target_names,
        classes=data.classes,
    )
