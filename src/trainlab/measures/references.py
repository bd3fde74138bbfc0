"""The references a linear model's training is measured against: the best it could do.

- `ols/loss`: the smallest training MSE any linear model reaches (least squares, closed form), for
  MSE runs; every step logs `ols/gap` = `train/loss` - `ols/loss` (for every engine).
- `optimum/loss`: the optimum of the objective the optimizer actually minimizes on the training
  rows, where that is a convex problem other than plain least squares: ridge (MSE with an L2
  `weight_decay`), logistic regression (bce_with_logits) and softmax regression (cross_entropy),
  with or without L2 decay. Every step logs `optimum/gap`: the step's loss plus the decay's
  penalty (`weight_decay / 2 * |params|^2`, as SGD, Adam and RMSprop add `weight_decay * param` to
  the gradient) minus the optimum. AdamW's decoupled decay minimizes no fixed objective: none.

Without decay, a classification objective has no minimum when some direction of the weights
lowers the loss for ever (separable classes, or one class separable from the rest): a linear
program finds such a direction, and the run says so once instead of logging a gap to a number
that does not exist. Computed once, in float64 on the CPU, before the run opens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from trainlab.config.models import LinearModelConfig
from trainlab.config.schema import TrainConfig
from trainlab.config.training import (
    AdamWConfig,
    BCEWithLogitsLossConfig,
    CrossEntropyLossConfig,
    MSELossConfig,
)
from trainlab.data.dataset import Dataset

# Above this many training values (80 MB in float64) the references are skipped.
OLS_MAX_ELEMENTS = 10_000_000
OLS_LOSS, OLS_GAP = "ols/loss", "ols/gap"
OPTIMUM_LOSS, OPTIMUM_GAP = "optimum/loss", "optimum/gap"


@dataclass(frozen=True)
class Optimum:
    loss: float  # the objective's minimum: the loss plus the penalty, at the best parameters
    penalty: float = 0.0  # weight_decay / 2: what |params|^2 adds to the objective


@dataclass(frozen=True)
class References:
    ols_loss: float | None = None
    optimum: Optimum | None = None
    note: str | None = None  # why there is no optimum, said once


def references(settings: TrainConfig, data: Dataset) -> References:
    """What this run's steps are measured against (nothing for models that are not linear)."""
    model = settings.model
    if not isinstance(model, LinearModelConfig) or data.x_train.numel() > OLS_MAX_ELEMENTS:
        return References()
    if data.datamodule is not None:  # x_train is its first batch, not the rows it trains on
        return References()
    loss = settings.loss
    decay = float(getattr(settings.optimizer, "weight_decay", 0.0))
    decoupled = isinstance(settings.optimizer, AdamWConfig) and decay > 0
    if isinstance(loss, MSELossConfig):
        ols = least_squares_loss(data, model.bias)
        if decay == 0 or decoupled:
            return References(ols_loss=ols)
        return References(ols_loss=ols, optimum=ridge_optimum(data, model.bias, decay))
    if not isinstance(loss, CrossEntropyLossConfig | BCEWithLogitsLossConfig):
        return References()
    if decoupled:
        return References(
            note="optimizer=adamw decays the weights outside the loss: no fixed objective to "
            "measure optimum/gap against"
        )
    binary = isinstance(loss, BCEWithLogitsLossConfig)
    smoothing = getattr(loss, "label_smoothing", 0.0)
    if decay == 0 and smoothing == 0 and not small_enough_to_check(data, model.bias, binary):
        return References(
            note="too many rows and classes to check that the loss has a minimum without weight "
            "decay: optimum/gap is not recorded (optimizer.weight_decay > 0 gives it one)"
        )
    if decay == 0 and smoothing == 0 and unbounded_direction(data, model.bias, binary):
        return References(
            note="the classes are separable (some direction of the weights lowers the loss for "
            "ever): without weight decay the loss has no minimum, so optimum/gap is not "
            "recorded; optimizer.weight_decay > 0 gives it one"
        )
    return References(optimum=logistic_optimum(data, model.bias, binary, smoothing, decay))


def design(data: Dataset, bias: bool) -> torch.Tensor:
    x = data.x_train.double()
    return torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1) if bias else x


def least_squares_loss(data: Dataset, bias: bool) -> float:
    """The optimum of the training MSE over linear models: lstsq on the training rows, float64."""
    x, y = design(data, bias), data.y_train.double()
    solution = torch.linalg.lstsq(x, y).solution
    return torch.mean((x @ solution - y) ** 2).item()


def ridge_optimum(data: Dataset, bias: bool, decay: float) -> Optimum:
    """min over W of mean((X W - Y)^2) + decay/2 |W|^2 (the bias decays too, as in torch's
    optimizers): (X^T X + n t decay / 2 I) W = X^T Y for n rows and t targets."""
    x, y = design(data, bias), data.y_train.double()
    scale = x.shape[0] * y.shape[1] * decay / 2
    w = torch.linalg.solve(x.T @ x + scale * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)
    value = torch.mean((x @ w - y) ** 2) + decay / 2 * (w**2).sum()
    return Optimum(loss=value.item(), penalty=decay / 2)


def logistic_optimum(
    data: Dataset, bias: bool, binary: bool, smoothing: float, decay: float
) -> Optimum:
    """The minimum of the mean cross entropy (+ decay/2 |params|^2), by L-BFGS in float64."""
    x, labels = design(data, bias), data.y_train.long()
    classes = classes_of(data, binary)
    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    solver = torch.optim.LBFGS(
        [w],
        lr=1,
        max_iter=500,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def value() -> torch.Tensor:
        logits = x @ w
        if binary:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits.reshape(-1), labels.double()
            )
        else:
            loss = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=smoothing)
        return loss + decay / 2 * (w**2).sum()

    def objective() -> torch.Tensor:
        solver.zero_grad()
        total = value()
        total.backward()
        return total

    for _ in range(20):  # restarts: L-BFGS stops at max_iter or a tiny change
        solver.step(objective)
        if w.grad is not None and float(w.grad.abs().max()) < 1e-9:
            break
    with torch.no_grad():
        return Optimum(loss=float(value()), penalty=decay / 2)


LP_MAX_ENTRIES = 5_000_000  # constraint matrix entries of the linear program (40 MB)


def classes_of(data: Dataset, binary: bool) -> int:
    if binary:
        return 1
    return max(len(data.classes), int(data.y_train.long().max()) + 1)


def small_enough_to_check(data: Dataset, bias: bool, binary: bool) -> bool:
    n, width = data.x_train.shape[0], data.x_train.shape[1] + bias
    classes = classes_of(data, binary)
    rows = n if binary else n * (classes - 1)
    return rows * width * max(classes, 1) <= LP_MAX_ENTRIES


def unbounded_direction(data: Dataset, bias: bool, binary: bool) -> bool:
    """Whether some direction D of the weights never raises any row's loss and lowers one: then
    the cross entropy has no minimum. Every row i and wrong class k give a margin change
    (d_{y_i} - d_k) . x_i >= 0 (binary: s_i d . x_i >= 0, s = +-1); maximize their sum within
    |D| <= 1: a sum above zero is such a direction (one class separable from the rest is enough)."""
    from scipy.optimize import linprog  # only classification runs without decay pay its import

    x = design(data, bias).numpy()
    labels = data.y_train.long().numpy()
    n, width = x.shape
    if binary:
        rows = x * np.where(labels == 1, 1.0, -1.0)[:, None]
    else:
        classes = classes_of(data, binary)
        blocks = []
        for k in range(classes):
            other = labels != k
            xs, ys = x[other], labels[other]
            block = np.zeros((len(xs), classes * width))
            columns = (ys * width)[:, None] + np.arange(width)
            block[np.arange(len(xs))[:, None], columns] = xs
            block[:, k * width : (k + 1) * width] -= xs
            blocks.append(block)
        rows = np.concatenate(blocks)
    scale = max(float(np.abs(rows).max()), 1.0)
    rows = rows / scale
    found = linprog(
        -rows.sum(axis=0), A_ub=-rows, b_ub=np.zeros(len(rows)), bounds=(-1, 1), method="highs"
    )
    return bool(found.success) and -float(found.fun) > 1e-7 * max(n, 1) and math.isfinite(found.fun)
