"""Structured configs: the shape and the allowed values of every config group.

Each group option's YAML starts from one of these dataclasses (registered in Hydra's
ConfigStore as ``<group>/<name>_schema``), so an unknown key or a wrong type fails while Hydra
composes. Value checks live in ``__post_init__``; they run when ``OmegaConf.to_object`` builds
the dataclasses, before any data is read or any MLflow run exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ConfigError(ValueError):
    """A config value that cannot work; the message is the one line shown to the user."""


def require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: expected {expected}")


# ----------------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    name: str = MISSING
    val_split: float = 0.0  # fraction of rows held out for val/loss
    standardize: bool = False  # scale features with the training rows' mean and std
    batch_size: int | None = None  # None: the whole training set in one batch (the seed)
    shuffle: bool = True
    x_test: Any = None  # one input row (list) or several (list of lists) to predict

    def __post_init__(self) -> None:
        require(0.0 <= self.val_split < 1.0, "data.val_split", self.val_split, "0 <= x < 1")
        if self.batch_size is not None:
            require(self.batch_size > 0, "data.batch_size", self.batch_size, "an integer > 0")


@dataclass
class SeedDataConfig(DataConfig):
    name: str = "seed"
    x: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0, 4.0])
    y: list[float] = field(default_factory=lambda: [2.0, 4.0, 6.0, 8.0])
    x_test: Any = field(default_factory=lambda: [5.0])

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.x) > 0, "data.x", self.x, "at least one value")
        require(len(self.x) == len(self.y), "data.y", self.y, f"{len(self.x)} values like data.x")


@dataclass
class SyntheticDataConfig(DataConfig):
    name: str = "synthetic"
    n_samples: int = 256
    n_features: int = 3
    n_targets: int = 1
    noise: float = 0.1  # standard deviation of the Gaussian noise added to Y
    weights: list[float] | None = None  # true weights, row-major (n_targets x n_features)
    bias: float = 0.0
    data_seed: int = 1234  # seed for the true weights, X and the noise

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.n_samples > 0, "data.n_samples", self.n_samples, "an integer > 0")
        require(self.n_features > 0, "data.n_features", self.n_features, "an integer > 0")
        require(self.n_targets > 0, "data.n_targets", self.n_targets, "an integer > 0")
        require(self.noise >= 0, "data.noise", self.noise, "a standard deviation >= 0")
        if self.weights is not None:
            size = self.n_features * self.n_targets
            require(len(self.weights) == size, "data.weights", self.weights, f"{size} values")


@dataclass
class CsvDataConfig(DataConfig):
    name: str = "csv"
    path: str = MISSING  # absolute, or relative to the folder the command runs in
    target: Any = MISSING  # one column name or a list of names
    features: list[str] | None = None  # None: every column but the target(s)
    delimiter: str = ","


@dataclass
class DiabetesDataConfig(DataConfig):
    name: str = "diabetes"  # scikit-learn's 442 x 10 data set, shipped inside the package


# ---------------------------------------------------------------------------------- model
INITS = ("default", "zeros", "constant")


@dataclass
class LinearModelConfig:
    _target_: str = "trainlab.module.LinearRegression"
    bias: bool = True
    init: str = "default"  # default (PyTorch's), zeros (the seed's w=0) or constant
    init_value: float = 0.0

    def __post_init__(self) -> None:
        require(self.init in INITS, "model.init", self.init, f"one of {', '.join(INITS)}")


# ----------------------------------------------------------------------------------- loss
@dataclass
class LossConfig:
    _target_: str = MISSING


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


# ------------------------------------------------------------------------------ optimizer
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


# ------------------------------------------------------------------------------ scheduler
@dataclass
class SchedulerConfig:
    _target_: str | None = None  # None: constant learning rate
    _partial_: bool = True


@dataclass
class StepLRConfig(SchedulerConfig):
    _target_: str | None = "torch.optim.lr_scheduler.StepLR"
    step_size: int = 30  # epochs between decays
    gamma: float = 0.1

    def __post_init__(self) -> None:
        require(self.step_size > 0, "scheduler.step_size", self.step_size, "an integer > 0")
        require(0 < self.gamma <= 1, "scheduler.gamma", self.gamma, "0 < gamma <= 1")


@dataclass
class CosineConfig(SchedulerConfig):
    _target_: str | None = "torch.optim.lr_scheduler.CosineAnnealingLR"
    T_max: int = 100  # epochs in one half cosine; train.yaml sets it to max_epochs
    eta_min: float = 0.0

    def __post_init__(self) -> None:
        require(self.T_max > 0, "scheduler.T_max", self.T_max, "an integer > 0")


@dataclass
class PlateauConfig(SchedulerConfig):
    _target_: str | None = "torch.optim.lr_scheduler.ReduceLROnPlateau"
    mode: str = "min"
    factor: float = 0.5
    patience: int = 10

    def __post_init__(self) -> None:
        require(0 < self.factor < 1, "scheduler.factor", self.factor, "0 < factor < 1")
        require(self.patience >= 0, "scheduler.patience", self.patience, "an integer >= 0")


# --------------------------------------------------------------------------------- device
ACCELERATORS = ("cpu", "gpu", "auto")
PRECISIONS = ("64", "32", "bf16-mixed", "16-mixed")
# auto: Lightning's single-device strategy for one process; for several, trainlab picks ddp or
# ddp_spawn by where the job runs (see trainlab.distributed).
STRATEGIES = ("auto", "ddp", "ddp_spawn")


@dataclass
class DeviceConfig:
    accelerator: str = "cpu"
    devices: int = 1  # processes per node: CPU processes (gloo) or GPUs (nccl)
    precision: str = "32"
    strategy: str = "auto"
    num_nodes: int = 1

    def __post_init__(self) -> None:
        require(
            self.accelerator in ACCELERATORS,
            "device.accelerator",
            self.accelerator,
            f"one of {', '.join(ACCELERATORS)}",
        )
        require(self.devices > 0, "device.devices", self.devices, "an integer > 0")
        require(self.num_nodes > 0, "device.num_nodes", self.num_nodes, "an integer > 0")
        require(
            self.strategy in STRATEGIES,
            "device.strategy",
            self.strategy,
            f"one of {', '.join(STRATEGIES)}",
        )
        require(
            self.precision in PRECISIONS,
            "device.precision",
            self.precision,
            f"one of {', '.join(PRECISIONS)}",
        )


# --------------------------------------------------------------------------------- engine
ENGINES = ("lightning", "autograd", "numpy")


@dataclass
class EngineConfig:
    name: str = "lightning"
    progress_bar: bool = False  # Lightning's bar; the console printer prints the seed's lines

    def __post_init__(self) -> None:
        require(self.name in ENGINES, "engine.name", self.name, f"one of {', '.join(ENGINES)}")


@dataclass
class AutogradEngineConfig(EngineConfig):
    """Note 18's loop: tensors with requires_grad, backward(), update under no_grad, zero_()."""

    name: str = "autograd"


@dataclass
class NumpyEngineConfig(EngineConfig):
    """Note 17's loop: NumPy arrays and the analytic gradient of the loss, no torch."""

    name: str = "numpy"


# ------------------------------------------------------------------------------- tracking
@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None  # None: MLFLOW_TRACKING_URI, else sqlite:///<home>/mlflow.db
    trajectory_limit: int = 64  # models with more parameters log norms, not every weight
    flush_every_seconds: float = 10.0  # buffered metrics also go out when the buffer is full
    plots: bool = True  # loss, fit, residual and weight plots as artifacts under plots/
    log_model: bool = True  # the trained model (with its standardization) as an MLflow model
    register: str | None = None  # a registered model name for each trained model; None: no
    alias: str = "current"  # the alias the newest registered version gets (never stages)

    def __post_init__(self) -> None:
        if self.register is not None:
            ok = bool(self.register.strip()) and not any(c in self.register for c in "/:")
            require(ok, "tracking.register", self.register, "a model name without '/' or ':'")
        alias_ok = bool(re.fullmatch(r"[\w-]+", self.alias)) and not re.fullmatch(
            r"latest|v\d+", self.alias, flags=re.IGNORECASE
        )
        require(
            alias_ok,
            "tracking.alias",
            self.alias,
            "letters, digits, _ or - (not 'latest' or 'v<number>', which MLflow reserves)",
        )
        require(
            self.trajectory_limit >= 0, "tracking.trajectory_limit", self.trajectory_limit, ">= 0"
        )
        require(
            self.flush_every_seconds > 0,
            "tracking.flush_every_seconds",
            self.flush_every_seconds,
            "> 0",
        )


# ---------------------------------------------------------------------------------- guard
GUARD_MODES = ("stop", "warn")


@dataclass
class GuardConfig:
    nonfinite: str = "stop"  # stop: a NaN/inf train/loss ends the run FAILED; warn: say it once
    check_every: int = 50  # steps between host reads of the check on a GPU (the CPU: every step)

    def __post_init__(self) -> None:
        require(
            self.nonfinite in GUARD_MODES,
            "guard.nonfinite",
            self.nonfinite,
            f"one of {', '.join(GUARD_MODES)}",
        )
        require(self.check_every > 0, "guard.check_every", self.check_every, "an integer > 0")


# ---------------------------------------------------------------------------------- sweep
@dataclass
class SweepConfig:
    # -m: a job that fails is recorded (child run FAILED) and the sweep goes on; true stops it
    # (jobs not yet started are skipped, the command exits non-zero).
    stop_on_failure: bool = False


# ------------------------------------------------------------------------------ top level
@dataclass
class TrainConfig:
    data: DataConfig = MISSING
    model: LinearModelConfig = MISSING
    loss: LossConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    scheduler: SchedulerConfig = MISSING
    device: DeviceConfig = MISSING
    engine: EngineConfig = MISSING
    tracking: TrackingConfig = MISSING
    sweep: SweepConfig = field(default_factory=SweepConfig)
    seed: int = 0
    max_epochs: int = 100
    max_steps: int = -1  # -1: no step limit, max_epochs decides
    x_test: Any = None
    print_every: int = 10  # print the seed's `epoch i, w = ..., loss = ...` line every N steps
    experiment_name: str = "trainlab"
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    guard: GuardConfig = field(default_factory=GuardConfig)
    resume: str | None = None  # a run id or a checkpoint path: continue that MLflow run

    def __post_init__(self) -> None:
        require(self.max_epochs > 0, "max_epochs", self.max_epochs, "an integer > 0")
        require(
            self.max_steps == -1 or self.max_steps > 0,
            "max_steps",
            self.max_steps,
            "-1 (no limit) or an integer > 0",
        )
        require(self.print_every >= 0, "print_every", self.print_every, ">= 0 (0: silent)")
        require(
            bool(self.experiment_name.strip()), "experiment_name", self.experiment_name, "a name"
        )


SCHEMAS: dict[str, dict[str, type]] = {
    "data": {
        "seed": SeedDataConfig,
        "synthetic": SyntheticDataConfig,
        "csv": CsvDataConfig,
        "diabetes": DiabetesDataConfig,
    },
    "model": {"linear": LinearModelConfig},
    "loss": {
        "mse": MSELossConfig,
        "l1": L1LossConfig,
        "huber": HuberLossConfig,
        "smooth_l1": SmoothL1LossConfig,
    },
    "optimizer": {
        "sgd": SGDConfig,
        "adam": AdamConfig,
        "adamw": AdamWConfig,
        "rmsprop": RMSpropConfig,
        "lbfgs": LBFGSConfig,
    },
    "scheduler": {
        "none": SchedulerConfig,
        "step": StepLRConfig,
        "cosine": CosineConfig,
        "plateau": PlateauConfig,
    },
    "device": {"device": DeviceConfig},
    "engine": {
        "engine": EngineConfig,
        "autograd": AutogradEngineConfig,
        "numpy": NumpyEngineConfig,
    },
    "tracking": {"tracking": TrackingConfig},
}


def register_configs() -> None:
    """Put every schema in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for group, options in SCHEMAS.items():
        for option, node in options.items():
            store.store(group=group, name=f"{option}_schema", node=node)
