"""Plots of a run, drawn when it ends (also when it fails) and logged under `plots/`.

The curves come from what the run recorded in MLflow (train/loss, val/loss, weight/..., bias/...),
read back after the metric buffer is flushed; the fit and the residuals come from the data and
the network as they are at the end. matplotlib is imported here only, with the Agg backend, so
that runs without tracking never pay for it.
"""

from __future__ import annotations

import math
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainlab.data import Dataset
from trainlab.model_logging import raw_inputs
from trainlab.tracking import MlflowRun

TRAJECTORY_LINES = 24  # more parameter curves than this make an unreadable plot
History = dict[str, tuple[list[int], list[float]]]


@dataclass
class PlotInputs:
    """What the plots are drawn from; the pipeline sets `network` once it is built."""

    data: Dataset
    network: nn.Module | None = None


@contextmanager
def plots_at_end(run: MlflowRun | None, data: Dataset, enabled: bool) -> Iterator[PlotInputs]:
    """Draw and log the plots when the block ends, however it ends.

    On failure the run's own error goes on unchanged: a plot that cannot be drawn then is
    reported in one line on stderr instead of hiding it.
    """
    inputs = PlotInputs(data)
    if run is None or not enabled:
        yield inputs
        return
    try:
        yield inputs
    except BaseException:
        try:
            log_run_plots(run, inputs.data, inputs.network)
        except Exception as err:
            print(f"trainlab: plots of the failed run not drawn: {err}", file=sys.stderr)
        raise
    log_run_plots(run, inputs.data, inputs.network)


def log_run_plots(run: MlflowRun, data: Dataset, network: nn.Module | None) -> list[str]:
    """Draw every plot that has something to show; log them as `plots/*.png`; return names."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    run.sink.flush()  # the history read below must include every buffered step
    history, n_parameters = metric_history(run)
    figures: dict[str, Any] = {}
    if "train/loss" in history:
        figures["loss.png"] = loss_figure(plt, history)
    predictions = predict_all(network, data) if network is not None else None
    if predictions is not None:
        figures["fit.png"] = fit_figure(plt, data, predictions)
        figures["residuals.png"] = residual_figure(plt, data, predictions)
    trajectory = {k: v for k, v in history.items() if k.startswith(("weight/", "bias/"))}
    if trajectory:
        figures["weights.png"] = weight_figure(plt, trajectory, n_parameters)
    with tempfile.TemporaryDirectory(prefix="trainlab-plots-") as folder:
        for name, figure in figures.items():
            figure.savefig(Path(folder) / name, dpi=100)
            plt.close(figure)
        if figures:
            run.client.log_artifacts(run.run_id, folder, "plots")
    return sorted(figures)


def metric_history(run: MlflowRun) -> tuple[History, int]:
    """(steps, values) of each curve to draw, from the tracking store; how many parameter curves.

    Only the parameter curves that fit in one plot are read: each key is one request that
    returns every step.
    """
    keys = run.client.get_run(run.run_id).data.metrics
    losses = [k for k in ("train/loss", "val/loss") if k in keys]
    parameters = sorted(k for k in keys if k.startswith(("weight/", "bias/")))
    history: History = {}
    for key in losses + parameters[:TRAJECTORY_LINES]:
        points = sorted(run.client.get_metric_history(run.run_id, key), key=lambda m: m.step)
        # A diverged run (guard.nonfinite=warn) has NaN, and inf stored as +-max: not drawable.
        points = [m for m in points if math.isfinite(m.value) and abs(m.value) < sys.float_info.max]
        history[key] = ([m.step for m in points], [m.value for m in points])
    return history, len(parameters)


def predict_all(network: nn.Module, data: Dataset) -> dict[str, torch.Tensor]:
    """Predictions for the training (and validation) rows, on the CPU, in float64."""
    network = network.to("cpu")
    parts = {"train": (data.x_train, data.y_train)}
    if data.x_val is not None and data.y_val is not None:
        parts["validation"] = (data.x_val, data.y_val)
    dtype = next(network.parameters()).dtype
    with torch.no_grad():
        return {name: network(x.to(dtype)).double() for name, (x, _) in parts.items()}


def targets(data: Dataset) -> dict[str, torch.Tensor]:
    found = {"train": data.y_train.double()}
    if data.y_val is not None:
        found["validation"] = data.y_val.double()
    return found


def loss_figure(plt: Any, history: History) -> Any:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for key in ("train/loss", "val/loss"):
        if key in history:
            steps, values = history[key]
            axes.plot(steps, values, label=key, marker="o" if len(steps) < 30 else None, ms=3)
    values = [v for key in ("train/loss", "val/loss") if key in history for v in history[key][1]]
    positive = [v for v in values if v > 0]
    # A loss that falls by orders of magnitude is a straight line on a log scale.
    if len(positive) == len(values) and positive and max(positive) / min(positive) > 50:
        axes.set_yscale("log")
    axes.set(xlabel="step", ylabel="loss", title="Loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def fit_figure(plt: Any, data: Dataset, predictions: dict[str, torch.Tensor]) -> Any:
    """One feature: the data and the fitted line. Several: predicted against actual."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    actual = targets(data)
    inputs = {"train": data.x_train}
    if data.x_val is not None:
        inputs["validation"] = data.x_val
    if data.n_features == 1:
        xs = {name: raw_inputs(data, x.double()).reshape(-1) for name, x in inputs.items()}
        for name, y in actual.items():
            for t in range(y.shape[1]):
                axes.scatter(xs[name], y[:, t], s=18, label=f"{name} data")
        order = torch.cat(list(xs.values())).argsort()
        line_x = torch.cat(list(xs.values()))[order]
        line_y = torch.cat(list(predictions.values()))[order]
        for t in range(line_y.shape[1]):
            axes.plot(line_x, line_y[:, t], color="C3", label="fitted line" if t == 0 else None)
        feature = data.feature_names[0] if data.feature_names else "x"
        axes.set(xlabel=feature, ylabel=", ".join(data.target_names) or "y", title="Fit")
    else:
        for name, y in actual.items():
            axes.scatter(y.reshape(-1), predictions[name].reshape(-1), s=12, label=name)
        both = torch.cat([y.reshape(-1) for y in actual.values()])
        low, high = both.min().item(), both.max().item()
        axes.plot([low, high], [low, high], color="gray", ls="--", label="prediction = actual")
        axes.set(xlabel="actual", ylabel="predicted", title="Predicted against actual")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def residual_figure(plt: Any, data: Dataset, predictions: dict[str, torch.Tensor]) -> Any:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, y in targets(data).items():
        predicted = predictions[name]
        axes.scatter(predicted.reshape(-1), (y - predicted).reshape(-1), s=14, label=name)
    axes.axhline(0.0, color="gray", ls="--")
    axes.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def weight_figure(plt: Any, trajectory: History, total: int) -> Any:
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for key in sorted(trajectory):
        steps, values = trajectory[key]
        axes.plot(steps, values, label=key)
    shown = len(trajectory)
    title = "Parameters" + (f" (first {shown} of {total})" if shown < total else "")
    axes.set(xlabel="step", ylabel="value", title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", ncol=2 if shown > 8 else 1)
    figure.tight_layout()
    return figure
