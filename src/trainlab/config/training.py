"""Schemas of the groups that define the math: loss, optimizer and scheduler (models: models.py).

Each schema names its class in `_target_` and holds every default; `hydra.utils.instantiate`
builds the object from the checked dataclass. `_partial_` optimizers and schedulers get their
parameters and optimizer from the LightningModule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from omegaconf import MISSING

from trainlab.errors import require

REGRESSION, CLASSIFICATION = "regression", "classification"


@dataclass
class LossConfig:
    _target_: str = MISSING
    # What the loss makes of the target column: numbers (regression) or labels (classification).
    task: ClassVar[str] = REGRESSION


@dataclass
class MSELossConfig(LossConfig):
    _target_: str = "torch.nn.MSELoss"


@dataclass
class L1LossConfig(LossConfig):
    _target_: str = "torch.nn.L1Loss"


@dataclass
class HuberLossConfig(LossConfig):
    _target_: str = "torch.nn.HuberLoss"
    delta: float = 1.0

    def __post_init__(self) -> None:
        require(self.delta > 0, "loss.delta", self.delta, "a number > 0")


@dataclass
class SmoothL1LossConfig(LossConfig):
    _target_: str = "torch.nn.SmoothL1Loss"
    beta: float = 1.0

    def __post_init__(self) -> None:
        require(self.beta >= 0, "loss.beta", self.beta, "a number >= 0")


@dataclass
class CrossEntropyLossConfig(LossConfig):
    """Softmax regression's loss (and any classifier's): one output per class, the target column
    read as labels; two classes work too (two outputs)."""

    _target_: str = "torch.nn.CrossEntropyLoss"
    label_smoothing: float = 0.0
    task: ClassVar[str] = CLASSIFICATION

    def __post_init__(self) -> None:
        smoothing = self.label_smoothing
        require(0 <= smoothing < 1, "loss.label_smoothing", smoothing, "0 <= x < 1")


@dataclass
class BCEWithLogitsLossConfig(LossConfig):
    """Logistic regression's loss: one output, two classes (the second class is the positive
    one, whose probability the output's sigmoid is)."""

    _target_: str = "torch.nn.BCEWithLogitsLoss"
    task: ClassVar[str] = CLASSIFICATION


def task_of(loss: LossConfig) -> str:
    """`classification` for a loss that reads the target column as labels, else `regression`."""
    return type(loss).task


@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    _partial_: bool = True  # the module binds the parameters
    lr: float = 0.01

    def __post_init__(self) -> None:
        require(self.lr > 0, "optimizer.lr", self.lr, "a learning rate > 0")
        decay = getattr(self, "weight_decay", 0.0)
        require(decay >= 0, "optimizer.weight_decay", decay, "a number >= 0")


@dataclass
class SGDConfig(OptimizerConfig):
    _target_: str = "torch.optim.SGD"
    weight_decay: float = 0.0
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 <= self.momentum < 1, "optimizer.momentum", self.momentum, "0 <= x < 1")
        require(0 <= self.dampening <= 1, "optimizer.dampening", self.dampening, "0 <= x <= 1")
        if self.nesterov:
            require(
                self.momentum > 0 and self.dampening == 0,
                "optimizer.nesterov",
                True,
                "momentum > 0 and dampening = 0",
            )


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adam"
    lr: float = 0.001
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    amsgrad: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        ok = len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)
        require(ok, "optimizer.betas", self.betas, "two numbers in [0, 1)")
        require(self.eps > 0, "optimizer.eps", self.eps, "a number > 0")


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "torch.optim.AdamW"
    weight_decay: float = 0.01


@dataclass
class RMSpropConfig(OptimizerConfig):
    _target_: str = "torch.optim.RMSprop"
    weight_decay: float = 0.0
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 <= self.alpha < 1, "optimizer.alpha", self.alpha, "0 <= x < 1")
        require(self.momentum >= 0, "optimizer.momentum", self.momentum, "a number >= 0")


@dataclass
class LBFGSConfig(OptimizerConfig):
    _target_: str = "torch.optim.LBFGS"
    lr: float = 1.0
    max_iter: int = 20
    history_size: int = 100
    line_search_fn: str | None = "strong_wolfe"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.max_iter > 0, "optimizer.max_iter", self.max_iter, "an integer > 0")
        require(self.history_size > 0, "optimizer.history_size", self.history_size, "> 0")
        searches = (None, "strong_wolfe")
        require(
            self.line_search_fn in searches,
            "optimizer.line_search_fn",
            self.line_search_fn,
            "strong_wolfe or null",
        )


@dataclass
class SchedulerConfig:
    _target_: str | None = None  # None: constant learning rate
    _partial_: bool = True


@dataclass
class StepLRConfig(SchedulerConfig):
    """lr *= gamma every step_size epochs."""

    _target_: str | None = "torch.optim.lr_scheduler.StepLR"
    step_size: int = 30
    gamma: float = 0.1

    def __post_init__(self) -> None:
        require(self.step_size > 0, "scheduler.step_size", self.step_size, "an integer > 0")
        require(0 < self.gamma <= 1, "scheduler.gamma", self.gamma, "0 < gamma <= 1")


@dataclass
class CosineConfig(SchedulerConfig):
    """Cosine annealing over the whole run: T_max follows max_epochs unless set."""

    _target_: str | None = "torch.optim.lr_scheduler.CosineAnnealingLR"
    T_max: int = "${max_epochs}"  # type: ignore[assignment]  # an interpolation OmegaConf resolves
    eta_min: float = 0.0

    def __post_init__(self) -> None:
        require(self.T_max > 0, "scheduler.T_max", self.T_max, "an integer > 0")
        require(self.eta_min >= 0, "scheduler.eta_min", self.eta_min, "a number >= 0")


@dataclass
class PlateauConfig(SchedulerConfig):
    """Scale the lr by `factor` when val/loss (else train/loss) stops improving."""

    _target_: str | None = "torch.optim.lr_scheduler.ReduceLROnPlateau"
    mode: str = "min"
    factor: float = 0.5
    patience: int = 10

    def __post_init__(self) -> None:
        require(self.mode in ("min", "max"), "scheduler.mode", self.mode, "min or max")
        require(0 < self.factor < 1, "scheduler.factor", self.factor, "0 < factor < 1")
        require(self.patience >= 0, "scheduler.patience", self.patience, "an integer >= 0")
