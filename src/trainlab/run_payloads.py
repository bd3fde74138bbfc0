"""What a finished run hands its recorder besides metrics (tracking/payloads.py): a sample of the
rows with the trained model's predictions for the plots, the model as it is served, and the
held-out rows (data.test_split) with its predictions, which the recorder scores.

The served model takes the raw numbers a person types: the trained network behind the
standardization it was trained with; a classifier's answers one probability per class. A
LightningModule of the user's is served whole (its forward is its model).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import nn

from trainlab.config.runtime import TrackingConfig
from trainlab.data.custom import test_rows
from trainlab.data.dataset import Dataset
from trainlab.models.linear import ClassProbabilities, StandardizedModel
from trainlab.models.portable import to_bytes
from trainlab.tracking.payloads import Evaluation, ModelPayload, PlotData

PLOT_ROWS = 2000  # the fit and residual plots show at most this many rows of each split


def network_of(module: L.LightningModule) -> nn.Module:
    """The model inside trainlab's LightningModule; a user's LightningModule is its own."""
    return getattr(module, "model", module)


def answers(network: nn.Module, data: Dataset) -> nn.Module:
    """What the network's outputs are served as: class probabilities for a classifier."""
    return ClassProbabilities(network).eval() if data.classes else network


def plot_data(data: Dataset | None, module: L.LightningModule | None) -> PlotData:
    """A sample of the rows, in raw units, with the trained network's predictions."""
    if data is None or module is None:
        return PlotData(x={}, y={}, predicted={}, feature_names=[], target_names=[])
    network = answers(network_of(module).to("cpu"), data)
    dtype = next(network.parameters()).dtype
    splits = {"train": (data.x_train, data.y_train)}
    if data.x_val is not None and data.y_val is not None:
        splits["validation"] = (data.x_val, data.y_val)
    x, y, predicted = {}, {}, {}
    for name, (rows, targets) in splits.items():
        rows, targets = rows[:PLOT_ROWS], targets[:PLOT_ROWS]
        with torch.no_grad():
            predicted[name] = network(rows.to(dtype)).double().numpy()
        x[name] = data.unscale(rows.double()).numpy()
        y[name] = targets.double().numpy()
    return PlotData(
        x=x,
        y=y,
        predicted=predicted,
        feature_names=data.feature_names,
        target_names=data.target_names,
        classes=data.classes,
    )


def servable_model(network: nn.Module, data: Dataset) -> StandardizedModel:
    """A CPU copy of the trained network with the data's standardization (identity when off)."""
    network = answers(network.to("cpu"), data)
    dtype = next(network.parameters()).dtype
    ones = torch.ones(data.n_features, dtype=dtype)
    mean = data.x_mean.to(dtype) if data.x_mean is not None else torch.zeros_like(ones)
    std = data.x_std.to(dtype) if data.x_std is not None else ones
    return StandardizedModel(network, mean.clone(), std.clone()).eval()


def model_payload(
    data: Dataset | None, module: L.LightningModule, tracking: TrackingConfig
) -> ModelPayload:
    assert data is not None
    model = servable_model(network_of(module), data)
    # A few raw training rows; at least two, so that torch.export keeps the batch size free.
    rows = data.unscale(data.x_train[:5].to("cpu")).to(model.mean.dtype)
    rows = rows if len(rows) > 1 else rows.repeat(2, 1)
    with torch.no_grad():
        output = model(rows).numpy()
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
        classes=data.classes,
    )


def evaluation(data: Dataset | None, module: L.LightningModule | None) -> Evaluation | None:
    """The held-out rows' targets and the trained model's predictions for them, or None."""
    if data is None or module is None:
        return None
    held_out = test_rows(data.datamodule) if data.datamodule is not None else None
    x_test, y_test = held_out if held_out is not None else (data.x_test, data.y_test)
    if x_test is None or y_test is None:
        return None
    network = answers(network_of(module).to("cpu"), data)
    with torch.no_grad():
        predicted = network(x_test.to(next(network.parameters()).dtype)).double().numpy()
    if data.classes:  # float32 softmax rows sum to 1 within 1e-7; scikit-learn's log loss warns
        predicted = predicted / predicted.sum(axis=1, keepdims=True)
    targets = y_test.numpy() if data.classes else y_test.double().numpy()
    return Evaluation(
        targets=targets,
        predicted=predicted,
        target_names=data.target_names,
        classes=data.classes,
    )
