"""The seed's own training loops as engines: note 17 (NumPy) and note 18 (autograd).

Both train the linear model the Lightning engine trains, from the same initial weights (copied
out of the torch module built after seeding), on the same data, and record what
TrackingCallback and ConsolePrinter record, with the same step semantics: `train/loss` at step i
is the loss of step i's forward pass, the weights are those after step i's update. The trained
weights go back into the torch module, so predictions and final losses are computed by the same
code for every engine. Independent implementations of one computation, they check each other
and the Lightning path (tests/test_engines.py).

Plus the least-squares reference: the smallest training MSE any linear model can reach.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import numpy as np
import torch
from torch import nn

from trainlab.console import format_weights
from trainlab.data import Dataset
from trainlab.module import RegressionModule
from trainlab.schema import (
    SCHEMAS,
    ConfigError,
    HuberLossConfig,
    L1LossConfig,
    LossConfig,
    MSELossConfig,
    SGDConfig,
    TrainConfig,
)
from trainlab.tracking import MlflowRun, parameter_keys

MANUAL_LOSSES = (MSELossConfig, L1LossConfig, HuberLossConfig)
# Above this many training values (80 MB in float64) the lstsq reference is skipped.
OLS_MAX_ELEMENTS = 10_000_000

NumpyLoss = Callable[[np.ndarray, np.ndarray], tuple[np.floating, np.ndarray]]


# ------------------------------------------------------------------------------ checks
def option_name(group: str, node: Any) -> str:
    """The config group option a schema object came from (`optimizer=adam`)."""
    names = [name for name, schema in SCHEMAS[group].items() if type(node) is schema]
    return names[0] if names else type(node).__name__


def check_engine(settings: TrainConfig, n_train: int) -> None:
    """Refuse, before any MLflow run exists, what a hand-written loop cannot express."""
    engine = settings.engine.name
    if engine == "lightning":
        return

    def refuse(choice: str, expected: str) -> NoReturn:
        raise ConfigError(
            f"engine={engine} does not support {choice}; expected {expected} (or engine=lightning)"
        )

    if not isinstance(settings.loss, MANUAL_LOSSES):
        refuse(f"loss={option_name('loss', settings.loss)}", "loss=mse, loss=l1 or loss=huber")
    opt = settings.optimizer
    if not isinstance(opt, SGDConfig):
        refuse(f"optimizer={option_name('optimizer', opt)}", "optimizer=sgd (plain SGD)")
    for key in ("momentum", "weight_decay"):
        if getattr(opt, key) != 0:
            refuse(f"optimizer.{key}={getattr(opt, key)}", f"optimizer.{key}=0 (plain SGD)")
    if opt.nesterov:
        refuse("optimizer.nesterov=true", "optimizer.nesterov=false (plain SGD)")
    if getattr(settings.scheduler, "_target_", None) is not None:
        refuse(f"scheduler={option_name('scheduler', settings.scheduler)}", "scheduler=none")
    if settings.data.batch_size not in (None, n_train):
        refuse(
            f"data.batch_size={settings.data.batch_size}",
            f"data.batch_size=null (the full batch of {n_train} rows, as in the seed)",
        )
    if settings.device.precision not in ("32", "64"):
        refuse(f"device.precision={settings.device.precision!r}", "device.precision=32 or 64")
    if settings.device.devices != 1:
        refuse(f"device.devices={settings.device.devices}", "device.devices=1")
    if settings.device.num_nodes != 1:
        refuse(f"device.num_nodes={settings.device.num_nodes}", "device.num_nodes=1")
    if engine == "numpy" and settings.device.accelerator != "cpu":
        refuse(f"device={settings.device.accelerator}", "device=cpu (NumPy runs on the CPU)")


# ---------------------------------------------------------------- least-squares reference
def least_squares_loss(data: Dataset, bias: bool) -> float:
    """The optimum of the training MSE over linear models: lstsq on the training rows, float64."""
    x, y = data.x_train.double(), data.y_train.double()
    if bias:
        x = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(x, y).solution
    return torch.mean((x @ solution - y) ** 2).item()


def ols_reference(settings: TrainConfig, data: Dataset) -> float | None:
    """`ols/loss` for runs that minimise the MSE of a linear model (None otherwise)."""
    if not isinstance(settings.loss, MSELossConfig):
        return None
    if data.x_train.numel() > OLS_MAX_ELEMENTS:
        return None
    return least_squares_loss(data, settings.model.bias)


# --------------------------------------------------------------------------- the steps
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
    x: np.ndarray, y: np.ndarray, params: list[np.ndarray], loss_fn: NumpyLoss, lr: float
) -> np.floating:
    """Note 17: forward, loss, analytic gradient, in-place update; returns the loss."""
    loss, dpred = loss_fn(numpy_forward(x, params), y)
    params[0] -= lr * (dpred.T @ x)  # dL/dW = (dL/dpred)^T X
    if len(params) > 1:
        params[1] -= lr * dpred.sum(axis=0)
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
) -> torch.Tensor:
    """Note 18: forward, loss, backward(), update under no_grad, zero the gradients."""
    loss = loss_fn(autograd_forward(x, params), y)
    loss.backward()
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


class StepRecorder:
    """TrackingCallback and ConsolePrinter for a hand-written full-batch loop."""

    def __init__(
        self,
        settings: TrainConfig,
        module: RegressionModule,
        run: MlflowRun | None,
        ols_loss: float | None,
    ) -> None:
        self.module, self.run, self.ols_loss = module, run, ols_loss
        self.limit = settings.tracking.trajectory_limit
        self.print_every = settings.print_every
        gap = ["ols/gap"] if ols_loss is not None else []
        self.keys = ["train/loss", *parameter_keys(module, self.limit), *gap]

    def record(self, step: int, loss: Any, params: list[Any]) -> None:
        if self.run is not None:
            self.run.sink.add(self.keys, self.values(loss, params), step)
        if self.print_every and step % self.print_every == 0:
            load_weights(self.module, params)
            print(f"epoch {step}, {format_weights(self.module)}, loss = {float(loss):.8g}")

    def values(self, loss: Any, params: list[Any]) -> torch.Tensor | list[float]:
        if isinstance(loss, torch.Tensor):  # autograd: stays on the device until the flush
            parts = [loss.reshape(1).double()]
            for p in params:
                p = p.detach()
                parts.append(p.norm().reshape(1) if p.numel() > self.limit else p.reshape(-1))
            if self.ols_loss is not None:
                parts.append(parts[0] - self.ols_loss)
            return torch.cat([part.double() for part in parts])
        values = [float(loss)]
        for p in params:
            values += [float(np.linalg.norm(p))] if p.size > self.limit else p.ravel().tolist()
        if self.ols_loss is not None:
            values.append(values[0] - self.ols_loss)
        return values

    def record_val(self, step: int, loss: Any) -> None:
        if self.run is not None:
            value = loss.reshape(1) if isinstance(loss, torch.Tensor) else [float(loss)]
            self.run.sink.add(["val/loss"], value, step)


def step_count(settings: TrainConfig) -> int:
    """Full batch: one optimizer step per epoch; max_steps (when set) stops earlier."""
    if settings.max_steps == -1:
        return settings.max_epochs
    return min(settings.max_epochs, settings.max_steps)


# ------------------------------------------------------------------------------ engines
def fit_numpy(
    settings: TrainConfig,
    module: RegressionModule,
    data: Dataset,
    accelerator: str,
    run: MlflowRun | None,
    ols_loss: float | None = None,
) -> int:
    """Note 17's loop on NumPy arrays; returns the number of optimizer steps taken."""
    dtype = np.float64 if settings.device.precision == "64" else np.float32
    as_array = lambda t: np.array(t.detach().cpu().numpy(), dtype=dtype)  # noqa: E731 (copies)
    params = [as_array(p) for p in linear_layer(module).parameters()]
    x, y = as_array(data.x_train), as_array(data.y_train)
    val = None if data.x_val is None else (as_array(data.x_val), as_array(data.y_val))
    loss_fn, lr = numpy_loss(settings.loss), settings.optimizer.lr
    recorder = StepRecorder(settings, module, run, ols_loss)
    steps = step_count(settings)
    for step in range(steps):
        loss = numpy_step(x, y, params, loss_fn, lr)
        recorder.record(step, loss, params)
        if val is not None:
            recorder.record_val(step, loss_fn(numpy_forward(val[0], params), val[1])[0])
    load_weights(module, params)
    return steps


def fit_autograd(
    settings: TrainConfig,
    module: RegressionModule,
    data: Dataset,
    accelerator: str,
    run: MlflowRun | None,
    ols_loss: float | None = None,
) -> int:
    """Note 18's loop on tensors with requires_grad; returns the number of optimizer steps."""
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    params = [
        p.detach().to(device).clone().requires_grad_(True)
        for p in linear_layer(module).parameters()
    ]
    x, y = data.x_train.to(device), data.y_train.to(device)
    val = None if data.x_val is None else (data.x_val.to(device), data.y_val.to(device))
    loss_fn, lr = module.loss, settings.optimizer.lr
    recorder = StepRecorder(settings, module, run, ols_loss)
    steps = step_count(settings)
    for step in range(steps):
        loss = autograd_step(x, y, params, loss_fn, lr)
        recorder.record(step, loss, params)
        if val is not None:
            with torch.no_grad():
                recorder.record_val(step, loss_fn(autograd_forward(val[0], params), val[1]))
    load_weights(module, [p.detach().cpu() for p in params])
    return steps
