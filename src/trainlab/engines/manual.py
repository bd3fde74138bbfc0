"""The seed's own training loops as engines: note 17 (NumPy) and note 18 (autograd).

Both train the linear model the Lightning engine trains, from the same initial weights (copied
out of the torch module built after seeding), on the same data, and record what the Lightning
engine records, with the same step semantics: `train/loss` at step i is the loss of step i's
forward pass, the weights are those after step i's update. The trained weights go back into the
torch module, so predictions and final losses are computed by the same code for every engine.
Independent implementations of one computation, they check each other and the Lightning path
(tests/test_engines.py). What they cannot express is refused by config/checks.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from trainlab.config.schema import TrainConfig
from trainlab.config.training import HuberLossConfig, L1LossConfig, LossConfig, MSELossConfig
from trainlab.console import ConsoleReporter, format_weights
from trainlab.engines.base import Engine, FitContext, FitResult
from trainlab.measures.trajectory import row_keys
from trainlab.models.lightning_module import RegressionModule

NumpyLoss = Callable[[np.ndarray, np.ndarray], tuple[np.floating, np.ndarray]]
GradientHook = Callable[[list[Any]], None]


def numpy_loss(cfg: LossConfig) -> NumpyLoss:
    """The configured loss (mean over all values, as torch's) and its gradient w.r.t. pred."""

    def mse(pred: np.ndarray, y: np.ndarray) -> tuple[np.floating, np.ndarray]:
        r = pred - y
        return (r * r).mean(), r * (2 / r.size)

    def l1(pred: np.ndarray, y: np.ndarray) -> tuple[np.floating, np.ndarray]:
        r = pred - y
        return np.abs(r).mean(), np.sign(r) / r.size

    def huber(pred: np.ndarray, y: np.ndarray) -> tuple[np.floating, np.ndarray]:
        delta = cfg.delta  # type: ignore[attr-defined]
        r = pred - y
        a = np.abs(r)
        loss = np.where(a < delta, 0.5 * r * r, delta * (a - 0.5 * delta)).mean()
        return loss, np.clip(r, -delta, delta) / r.size

    losses = {MSELossConfig: mse, L1LossConfig: l1, HuberLossConfig: huber}
    return losses[type(cfg)]


def numpy_forward(x: np.ndarray, params: list[np.ndarray]) -> np.ndarray:
    """x W^T (+ b): params is [weight] or [weight, bias]."""
    pred = x @ params[0].T
    return pred + params[1] if len(params) > 1 else pred


def numpy_step(
    x: np.ndarray,
    y: np.ndarray,
    params: list[np.ndarray],
    loss_fn: NumpyLoss,
    lr: float,
    on_gradients: GradientHook | None = None,
) -> np.floating:
    """Note 17: forward, loss, analytic gradient, in-place update; returns the loss.
    `on_gradients` sees the gradients before the update (tracking.grad_norm)."""
    loss, dpred = loss_fn(numpy_forward(x, params), y)
    grads = [dpred.T @ x]  # dL/dW = (dL/dpred)^T X
    if len(params) > 1:
        grads.append(dpred.sum(axis=0))
    if on_gradients is not None:
        on_gradients(grads)
    for param, grad in zip(params, grads, strict=True):
        param -= lr * grad
    return loss


def autograd_forward(x: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """x W^T (+ b) by hand, as note 18 writes w * x: no nn.Linear."""
    pred = x @ params[0].T
    return pred + params[1] if len(params) > 1 else pred


def autograd_step(
    x: torch.Tensor,
    y: torch.Tensor,
    params: list[torch.Tensor],
    loss_fn: nn.Module,
    lr: float,
    on_gradients: GradientHook | None = None,
) -> torch.Tensor:
    """Note 18: forward, loss, backward(), update under no_grad, zero the gradients."""
    loss = loss_fn(autograd_forward(x, params), y)
    loss.backward()
    if on_gradients is not None:
        on_gradients([param.grad for param in params])
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad
    for param in params:
        # Gradients add up across backward() calls until zeroed (note 15).
        param.grad.zero_()
    return loss.detach()


# ------------------------------------------------------------- what every step records
def linear_layer(module: RegressionModule) -> nn.Linear:
    return module.model.lin


def load_weights(module: RegressionModule, params: list[Any]) -> None:
    """Copy an engine's weight (and bias) into the torch module, which predicts and prints."""
    layer = linear_layer(module)
    with torch.no_grad():
        for target, value in zip(layer.parameters(), params, strict=True):
            target.copy_(torch.as_tensor(value))


class LoopSteps:
    """What the Lightning engine's rows and console callbacks do, for a hand-written full-batch
    loop: each step's row to the run, the seed's line."""

    def __init__(self, context: FitContext, steps: int) -> None:
        settings = context.settings
        self.module, self.run = context.module, context.run
        # The manual engines train linear models on mse/l1/huber with plain SGD: at most ols/gap.
        self.ols_loss = context.references.ols_loss
        self.limit = context.rows.trajectory_limit
        self.lr = settings.optimizer.lr  # constant: the manual engines take no scheduler
        self.with_grad_norm = context.rows.grad_norm
        self.keys = row_keys(self.module, context.rows)
        self.console = ConsoleReporter(settings.print_every, settings.engine.progress_bar, steps)
        self.grad_norm: Any = None

    def gradients(self, grads: list[Any]) -> None:
        """The step's gradients, before its update: their 2-norm for train/grad_norm."""
        if isinstance(grads[0], torch.Tensor):
            self.grad_norm = torch.nn.utils.get_total_norm(grads)
        else:
            self.grad_norm = float(np.sqrt(sum(float(np.sum(g * g)) for g in grads)))

    @property
    def gradient_hook(self) -> GradientHook | None:
        return self.gradients if self.with_grad_norm else None

    def record(self, step: int, loss: Any, params: list[Any]) -> None:
        if self.run is not None:
            self.run.add(self.keys, self.values(loss, params), step)
        if self.console.wants_line(step):
            load_weights(self.module, params)
            self.console.line(
                f"epoch {step}, {format_weights(self.module)}, loss = {float(loss):.8g}"
            )
        self.console.tick(step, step, lambda: float(loss))

    def values(self, loss: Any, params: list[Any]) -> torch.Tensor | list[float]:
        if isinstance(loss, torch.Tensor) and loss.device.type != "cpu":
            parts = [loss.reshape(1).double(), loss.new_full((1,), self.lr)]
            for p in params:
                p = p.detach()
                parts.append(p.norm().reshape(1) if p.numel() > self.limit else p.reshape(-1))
            if self.ols_loss is not None:
                parts.append(parts[0] - self.ols_loss)
            if self.with_grad_norm:
                parts.append(self.grad_norm.reshape(1))
            return torch.cat([part.double() for part in parts])
        values = [float(loss), self.lr]
        for p in params:
            p = p.detach().numpy() if isinstance(p, torch.Tensor) else p
            values += [float(np.linalg.norm(p))] if p.size > self.limit else p.ravel().tolist()
        if self.ols_loss is not None:
            values.append(values[0] - self.ols_loss)
        if self.with_grad_norm:
            values.append(float(self.grad_norm))
        return values

    def record_val(self, step: int, loss: Any) -> None:
        if self.run is not None:
            on_device = isinstance(loss, torch.Tensor) and loss.device.type != "cpu"
            self.run.add(
                ["val/loss"], loss.reshape(1).double() if on_device else [float(loss)], step
            )

    def close(self, steps: int) -> None:
        self.console.close(steps)


def step_count(settings: TrainConfig) -> int:
    """Full batch: one optimizer step per epoch; max_steps (when set) stops earlier."""
    if settings.max_steps == -1:
        return settings.max_epochs
    return min(settings.max_epochs, settings.max_steps)


# ------------------------------------------------------------------------------ engines
def fit_numpy(context: FitContext) -> FitResult:
    """Note 17's loop on NumPy arrays."""
    settings, data, module = context.settings, context.data, context.module
    dtype = np.float64 if settings.device.precision == "64" else np.float32

    def as_array(t: torch.Tensor) -> np.ndarray:
        return np.array(t.detach().cpu().numpy(), dtype=dtype)  # a copy, in the run's dtype

    params = [as_array(p) for p in linear_layer(module).parameters()]
    x, y = as_array(data.x_train), as_array(data.y_train)
    val = None if data.x_val is None else (as_array(data.x_val), as_array(data.y_val))
    loss_fn, lr = numpy_loss(settings.loss), settings.optimizer.lr
    steps = step_count(settings)
    steps_out = LoopSteps(context, steps)
    for step in range(steps):
        loss = numpy_step(x, y, params, loss_fn, lr, steps_out.gradient_hook)
        steps_out.record(step, loss, params)
        if val is not None:
            steps_out.record_val(step, loss_fn(numpy_forward(val[0], params), val[1])[0])
    steps_out.close(steps)
    load_weights(module, params)
    return FitResult(steps)


def fit_autograd(context: FitContext) -> FitResult:
    """Note 18's loop on tensors with requires_grad."""
    settings, data, module = context.settings, context.data, context.module
    device = torch.device("cuda" if context.accelerator == "gpu" else "cpu")
    params = [
        p.detach().to(device).clone().requires_grad_(True)
        for p in linear_layer(module).parameters()
    ]
    x, y = data.x_train.to(device), data.y_train.to(device)
    val = None if data.x_val is None else (data.x_val.to(device), data.y_val.to(device))
    loss_fn, lr = module.loss, settings.optimizer.lr
    steps = step_count(settings)
    steps_out = LoopSteps(context, steps)
    for step in range(steps):
        loss = autograd_step(x, y, params, loss_fn, lr, steps_out.gradient_hook)
        steps_out.record(step, loss, params)
        if val is not None:
            with torch.no_grad():
                steps_out.record_val(step, loss_fn(autograd_forward(val[0], params), val[1]))
    steps_out.close(steps)
    load_weights(module, [p.detach().cpu() for p in params])
    return FitResult(steps)


class NumpyEngine(Engine):
    """`engine=numpy`: note 17's loop."""

    def fit(self, context: FitContext) -> FitResult:
        return fit_numpy(context)


class AutogradEngine(Engine):
    """`engine=autograd`: note 18's loop."""

    def fit(self, context: FitContext) -> FitResult:
        return fit_autograd(context)
