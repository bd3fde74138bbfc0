"""Plots of a run, drawn by the recorder when the run ends (also when it fails), under `plots/`.

The curves come from the rows the recorder wrote (History, kept as they arrive: at most
MAX_POINTS per curve, thinned evenly for longer runs), never read back from the store; the fit and
the residuals come from a sample of the data and the trained model's predictions, which the
trainer hands over. Figures are matplotlib `Figure`s on the Agg canvas: no pyplot state.
"""

from __future__ import annotations

import io
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from trainlab.tracking.messages import Rows
from trainlab.tracking.payloads import PlotData

TRAJECTORY_LINES = 24  # more parameter curves than this make an unreadable plot
MAX_POINTS = 20_000  # per curve; a longer history keeps every 2nd, 4th, ... point
LOSS_KEYS = ("train/loss", "val/loss")
PARAMETER_PREFIXES = ("weight/", "bias/")
SIZE = (7, 4.5)  # inches, at 100 dpi: 700 x 450 pixels


def new_axes() -> tuple[Figure, Axes]:
    """A figure with fixed margins and fixed places for the title and the axis labels.

    Placing them automatically makes matplotlib measure every tick label of the figure before
    it draws: a layout engine ("tight") and the automatic title and label positions are most of a
    figure's drawing time; these positions fit what we draw."""
    with rc_context({"axes.titley": 1.01}):  # a title position given: no measuring for it
        figure = Figure(figsize=SIZE)
        figure.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.92)
        axes = figure.subplots()
    axes.xaxis.set_label_coords(0.5, -0.085)
    axes.yaxis.set_label_coords(-0.105, 0.5)
    return figure, axes


def rehearse_drawing() -> None:
    """Draw one small figure of the kind the plots are, and throw it away: the first figure of
    a process loads the fonts and fills matplotlib's caches (recorder/warmup.py)."""
    figure, axes = new_axes()
    axes.plot([0, 1], [1, 0], label="loss")
    axes.set(xlabel="step", ylabel="loss", title="Loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(io.BytesIO(), format="png", dpi=100)


class Curve:
    """One metric's (step, value) points, thinned evenly once it holds MAX_POINTS."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.values: list[float] = []
        self.stride, self.seen = 1, 0

    def add(self, step: int, value: float) -> None:
        self.extend([step], [value])

    def extend(self, steps: list[int], values: list[float]) -> None:
        """Points in order: every `stride`-th point seen is kept (a slice per batch, not a call
        per point: the recorder draws every value it writes)."""
        while steps:
            first = -self.seen % self.stride  # the first of these that is a kept point
            kept = steps[first :: self.stride]
            room = MAX_POINTS - len(self.steps)
            if len(kept) < room:
                self.steps += kept
                self.values += values[first :: self.stride]
                self.seen += len(steps)
                return
            last = first + (room - 1) * self.stride  # the point that fills the curve
            self.steps += kept[:room]
            self.values += values[first : last + 1 : self.stride]
            self.steps, self.values = self.steps[::2], self.values[::2]
            self.stride *= 2
            self.seen += last + 1
            steps, values = steps[last + 1 :], values[last + 1 :]

    def finite(self) -> tuple[list[int], list[float]]:
        # A diverged run (guard.nonfinite=warn) has NaN and inf: not drawable.
        points = [
            (s, v)
            for s, v in zip(self.steps, self.values, strict=True)
            if math.isfinite(v) and abs(v) < sys.float_info.max
        ]
        return [s for s, _ in points], [v for _, v in points]


class History:
    """The curves the plots draw: the losses and the first TRAJECTORY_LINES parameters."""

    def __init__(self) -> None:
        self.curves: dict[str, Curve] = {}
        self.parameters: set[str] = set()

    def add(self, rows: Rows) -> None:
        columns = []
        for index, key in enumerate(rows.keys):
            if key.startswith(PARAMETER_PREFIXES):
                self.parameters.add(key)
                if key not in self.curves and len(self.trajectory_keys()) >= TRAJECTORY_LINES:
                    continue
            elif key not in LOSS_KEYS:
                continue
            columns.append((index, self.curves.setdefault(key, Curve())))
        steps = rows.steps.tolist()
        for index, curve in columns:
            curve.extend(steps, rows.values[:, index].tolist())

    def trajectory_keys(self) -> list[str]:
        return sorted(k for k in self.curves if k.startswith(PARAMETER_PREFIXES))


def log_run_plots(client: MlflowClient, run_id: str, history: History, data: PlotData) -> list[str]:
    """Draw every plot that has something to show; log them as `plots/*.png`; return names."""
    figures: dict[str, Figure] = {}
    if "train/loss" in history.curves:
        figures["loss.png"] = loss_figure(history)
    if data.predicted and data.classes:
        split = "validation" if "validation" in data.predicted else "train"
        figures["confusion_matrix.png"] = confusion_figure(
            data.y[split], data.predicted[split], data.classes, f"{split} rows"
        )
    elif data.predicted:
        figures["fit.png"] = fit_figure(data)
        figures["residuals.png"] = residual_figure(data)
    if history.trajectory_keys():
        figures["weights.png"] = weight_figure(history)
    log_figures(client, run_id, figures, "plots")
    return sorted(figures)


def log_figures(client: MlflowClient, run_id: str, figures: dict[str, Figure], path: str) -> None:
    """Save each figure as PNG and log them under `path` in one request."""
    if not figures:
        return
    with tempfile.TemporaryDirectory(prefix="trainlab-plots-") as folder:
        for name, figure in figures.items():
            figure.savefig(Path(folder) / name, dpi=100)
        client.log_artifacts(run_id, folder, path)


def loss_figure(history: History) -> Figure:
    figure, axes = new_axes()
    everything: list[float] = []
    for key in LOSS_KEYS:
        if key in history.curves:
            steps, values = history.curves[key].finite()
            axes.plot(steps, values, label=key, marker="o" if len(steps) < 30 else None, ms=3)
            everything += values
    positive = [v for v in everything if v > 0]
    # A loss that falls by orders of magnitude is a straight line on a log scale.
    if positive and len(positive) == len(everything) and max(positive) / min(positive) > 50:
        axes.set_yscale("log")
    axes.set(xlabel="step", ylabel="loss", title="Loss")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def fit_figure(data: PlotData) -> Figure:
    """One feature: the data and the fitted line. Several: predicted against actual."""
    figure, axes = new_axes()
    if next(iter(data.x.values())).shape[1] == 1:
        for name, y in data.y.items():
            for t in range(y.shape[1]):
                axes.scatter(data.x[name][:, 0], y[:, t], s=18, label=f"{name} data")
        line_x = np.concatenate([data.x[name][:, 0] for name in data.predicted])
        line_y = np.concatenate(list(data.predicted.values()))
        order = np.argsort(line_x)
        for t in range(line_y.shape[1]):
            label = "fitted line" if t == 0 else None
            axes.plot(line_x[order], line_y[order, t], color="C3", label=label)
        feature = data.feature_names[0] if data.feature_names else "x"
        axes.set(xlabel=feature, ylabel=", ".join(data.target_names) or "y", title="Fit")
    else:
        for name, y in data.y.items():
            axes.scatter(y.reshape(-1), data.predicted[name].reshape(-1), s=12, label=name)
        both = np.concatenate([y.reshape(-1) for y in data.y.values()])
        low, high = float(both.min()), float(both.max())
        axes.plot([low, high], [low, high], color="gray", ls="--", label="prediction = actual")
        axes.set(xlabel="actual", ylabel="predicted", title="Predicted against actual")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def residual_figure(data: PlotData) -> Figure:
    series = {name: (data.predicted[name], y) for name, y in data.y.items()}
    return residuals(series, "Residuals")


def residuals(series: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> Figure:
    """actual - predicted against predicted, one scatter per named (predicted, actual) pair."""
    figure, axes = new_axes()
    for name, (predicted, actual) in series.items():
        residual = (actual - predicted).reshape(-1)
        axes.scatter(predicted.reshape(-1), residual, s=14, label=name)
    axes.axhline(0.0, color="gray", ls="--")
    axes.set(xlabel="predicted", ylabel="actual - predicted", title=title)
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def weight_figure(history: History) -> Figure:
    figure, axes = new_axes()
    keys = history.trajectory_keys()
    for key in keys:
        axes.plot(*history.curves[key].finite(), label=key)
    total = len(history.parameters)
    title = "Parameters" + (f" (first {len(keys)} of {total})" if len(keys) < total else "")
    axes.set(xlabel="step", ylabel="value", title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", ncol=2 if len(keys) > 8 else 1)
    return figure


def confusion_figure(
    targets: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...], rows: str
) -> Figure:
    """Rows: the true class; columns: the most probable one; each cell its count."""
    count = len(classes)
    chosen = probabilities.argmax(axis=1)
    matrix = np.zeros((count, count), dtype=np.int64)
    np.add.at(matrix, (targets.astype(np.int64), chosen), 1)
    figure, axes = new_axes()
    axes.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        color = "white" if value > matrix.max() / 2 else "black"
        axes.text(j, i, str(value), ha="center", va="center", color=color)
    axes.set_xticks(range(count), classes, rotation=30 if count > 4 else 0)
    axes.set_yticks(range(count), classes)
    axes.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix ({rows})")
    return figure
