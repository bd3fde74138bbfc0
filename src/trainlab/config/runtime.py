"""Schemas of where and how a run executes and what it records: device, engine, the Lightning
Trainer's knobs, tracking, the divergence guard, early stopping, sweep behaviour and re-runs."""

from __future__ import annotations

import re
from dataclasses import dataclass

from trainlab.errors import ConfigError, require

ACCELERATORS = ("cpu", "gpu", "auto")
PRECISIONS = ("64", "32", "bf16-mixed", "16-mixed")
# auto: Lightning's single-device strategy for one process; for several, trainlab picks ddp or
# ddp_spawn by where the job runs (see trainlab.engines.distributed).
STRATEGIES = ("auto", "ddp", "ddp_spawn")


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    require(value in allowed, key, value, f"one of {', '.join(allowed)}")


@dataclass
class DeviceConfig:
    accelerator: str = "cpu"
    devices: int = 1  # processes per node: CPU processes (gloo) or GPUs (nccl)
    precision: str = "32"  # 64 | 32 | bf16-mixed | 16-mixed (GPU only)
    strategy: str = "auto"
    num_nodes: int = 1

    def __post_init__(self) -> None:
        _one_of("device.accelerator", self.accelerator, ACCELERATORS)
        require(self.devices > 0, "device.devices", self.devices, "an integer > 0")
        require(self.num_nodes > 0, "device.num_nodes", self.num_nodes, "an integer > 0")
        _one_of("device.strategy", self.strategy, STRATEGIES)
        _one_of("device.precision", self.precision, PRECISIONS)
        if self.accelerator == "cpu" and self.precision == "16-mixed":
            raise ConfigError(
                "device.precision='16-mixed' needs a GPU; expected bf16-mixed, 32 or 64 on the CPU"
            )

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes


CLIP_ALGORITHMS = ("norm", "value")
DIRECTIONS = ("minimize", "maximize")


@dataclass
class TrainerConfig:
    """Lightning's Trainer, built by hydra.utils.instantiate from these keys (engine=lightning;
    the notes' own loops refuse any change). trainlab adds what other groups own: the device and
    strategy (`device.*`), the length (`max_epochs`, `max_steps`), the callbacks (`callbacks`),
    the logger (the run) and the folder. Values are Lightning's, with its defaults unless said."""

    _target_: str = "lightning.pytorch.Trainer"
    gradient_clip_val: float | None = None  # None: no clipping
    gradient_clip_algorithm: str = "norm"  # norm: scale the total 2-norm; value: clamp each
    accumulate_grad_batches: int = 1  # batches whose gradients add up into one optimizer step
    deterministic: bool = False  # torch.use_deterministic_algorithms (and cuBLAS's setting)
    check_val_every_n_epoch: int = 1  # val/loss every N epochs (with data.val_split > 0)
    # How often what a module logs with self.log(on_step=True) reaches the run (its epoch values
    # come at every epoch's end). trainlab's own rows are every step whatever this says.
    log_every_n_steps: int = 1
    limit_train_batches: int | float | None = None  # batches per epoch (int) or a fraction
    limit_val_batches: int | float | None = None
    val_check_interval: int | float | None = None  # validate every N batches or epoch fraction
    min_epochs: int | None = None
    min_steps: int | None = None
    num_sanity_val_steps: int = 0  # trainlab's default: no validation before training
    enable_model_summary: bool = False  # trainlab's default: the table goes nowhere useful
    benchmark: bool | None = None  # cudnn.benchmark
    detect_anomaly: bool = False  # torch.autograd's anomaly detection (slow)

    def __post_init__(self) -> None:
        require(bool(self._target_.strip()), "trainer._target_", self._target_, "a class path")
        clip = self.gradient_clip_val
        if clip is not None:
            require(clip > 0, "trainer.gradient_clip_val", clip, "a number > 0 (null: no clipping)")
        algorithm = self.gradient_clip_algorithm
        _one_of("trainer.gradient_clip_algorithm", algorithm, CLIP_ALGORITHMS)
        batches = self.accumulate_grad_batches
        require(batches > 0, "trainer.accumulate_grad_batches", batches, "an integer > 0")
        every = self.check_val_every_n_epoch
        require(every > 0, "trainer.check_val_every_n_epoch", every, "an integer > 0")
        every = self.log_every_n_steps
        require(every >= 0, "trainer.log_every_n_steps", every, "an integer >= 0 (0: never)")
        for key in ("limit_train_batches", "limit_val_batches", "val_check_interval"):
            value = getattr(self, key)
            if value is not None:
                require(value > 0, f"trainer.{key}", value, "a number > 0 (null: Lightning's)")
        for key in ("min_epochs", "min_steps"):
            value = getattr(self, key)
            if value is not None:
                require(value >= 0, f"trainer.{key}", value, "an integer >= 0, or null")


@dataclass
class EngineConfig:
    """The loop that trains: `_target_` names the engine class (an engines/base.py `Engine`),
    built with these keys, whose fit(context) -> FitResult trains."""

    _target_: str = "trainlab.engines.lightning.LightningEngine"
    name: str = "lightning"  # how runs are tagged (trainlab.engine) and named in messages
    # A one-line progress bar (step, epoch, loss, speed, time left) on a terminal. None: for runs
    # long enough to need one, when the seed's lines are not printed every few steps.
    progress_bar: bool | None = None

    def __post_init__(self) -> None:
        require(bool(self.name.strip()), "engine.name", self.name, "a name")


@dataclass
class AutogradEngineConfig(EngineConfig):
    """Note 18's loop: tensors with requires_grad, backward(), update under no_grad, zero_()."""

    _target_: str = "trainlab.engines.manual.AutogradEngine"
    name: str = "autograd"


@dataclass
class NumpyEngineConfig(EngineConfig):
    """Note 17's loop: NumPy arrays and the analytic gradient of the loss, no torch."""

    _target_: str = "trainlab.engines.manual.NumpyEngine"
    name: str = "numpy"


MODEL_FORMATS = ("pickle", "pt2")


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None  # None: MLFLOW_TRACKING_URI, else sqlite:///<home>/mlflow.db
    trajectory_limit: int = 64  # models with more parameters log norms, not every weight
    # How often the trainer hands buffered rows to the recorder (a pickled array through a
    # socket, cheap enough to do often), so that the store is written while the run trains.
    flush_every_seconds: float = 0.25
    plots: bool = True  # loss, fit, residual and weight plots as artifacts under plots/
    log_model: bool = True  # the trained model (with its standardization) as an MLflow model
    # pt2: torch.export's program, which runs no code when loaded (a model that does not export
    # is logged as its weights). "pickle", the former default, is still accepted so that older
    # runs resume and rerun, and is logged as pt2 too: trainlab no longer logs pickled models.
    model_format: str = "pt2"
    register: str | None = None  # a registered model name for each trained model; None: no
    alias: str = "current"  # the alias the newest registered version gets (never stages)
    # CPU, memory, disk, network (and GPU) of this machine as system/... metrics, sampled by
    # MLflow's own monitor in the recorder process; one last sample when the run ends.
    system_metrics: bool = True
    system_metrics_every_seconds: float = 10.0  # MLflow's default sampling interval
    grad_norm: bool = False  # train/grad_norm: the gradients' 2-norm at every step
    # How often the recorder rewrites the run's trainlab.heartbeat tag; a run whose heartbeat is
    # 4 beats (+1 min) old and whose processes are gone is stale (trainlab-store stale).
    heartbeat_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.register is not None:
            ok = bool(self.register.strip()) and not any(c in self.register for c in "/:")
            require(ok, "tracking.register", self.register, "a model name without '/' or ':'")
        reserved = re.fullmatch(r"latest|v\d+", self.alias, flags=re.IGNORECASE)
        require(
            bool(re.fullmatch(r"[\w-]+", self.alias)) and not reserved,
            "tracking.alias",
            self.alias,
            "letters, digits, _ or - (not 'latest' or 'v<number>', which MLflow reserves)",
        )
        _one_of("tracking.model_format", self.model_format, MODEL_FORMATS)
        limit = self.trajectory_limit
        require(limit >= 0, "tracking.trajectory_limit", limit, "an integer >= 0")
        every = self.flush_every_seconds
        require(every > 0, "tracking.flush_every_seconds", every, "a number of seconds > 0")
        every = self.system_metrics_every_seconds
        key = "tracking.system_metrics_every_seconds"
        require(every > 0, key, every, "a number of seconds > 0")
        beat = self.heartbeat_seconds
        require(beat > 0, "tracking.heartbeat_seconds", beat, "a number of seconds > 0")


@dataclass
class EarlyStopConfig:
    """Stop training before max_epochs; off unless `patience` or `ols_gap` is set."""

    # The metric watched by `patience`: train/loss, val/loss or any the module logs (val/acc,
    # with mode=max); None: val/loss with a validation split, else train/loss.
    monitor: str | None = None
    patience: int | None = None  # epochs without an improvement > min_delta; None: no such rule
    min_delta: float = 0.0
    mode: str = "min"  # min: lower is better (losses)
    # Stop once the epoch's train/loss is within this of ols/loss (MSE runs); None: no such rule.
    ols_gap: float | None = None

    def __post_init__(self) -> None:
        if self.monitor is not None:
            name = self.monitor.strip()
            require(bool(name), "early_stop.monitor", self.monitor, "a metric name like val/acc")
            if self.patience is None:
                raise ConfigError(
                    f"early_stop.monitor={self.monitor!r} needs early_stop.patience; expected "
                    "early_stop.patience=N (epochs without improvement before stopping)"
                )
        if self.patience is not None:
            require(self.patience > 0, "early_stop.patience", self.patience, "an integer > 0")
        require(self.min_delta >= 0, "early_stop.min_delta", self.min_delta, "a number >= 0")
        _one_of("early_stop.mode", self.mode, ("min", "max"))
        if self.ols_gap is not None:
            require(self.ols_gap > 0, "early_stop.ols_gap", self.ols_gap, "a loss gap > 0")

    @property
    def enabled(self) -> bool:
        return self.patience is not None or self.ols_gap is not None


GUARD_MODES = ("stop", "warn")


@dataclass
class GuardConfig:
    nonfinite: str = "stop"  # stop: a NaN/inf train/loss ends the run FAILED; warn: say it once
    check_every: int = 50  # steps between host reads of the check on a GPU (the CPU: every step)

    def __post_init__(self) -> None:
        _one_of("guard.nonfinite", self.nonfinite, GUARD_MODES)
        require(self.check_every > 0, "guard.check_every", self.check_every, "an integer > 0")


@dataclass
class SweepConfig:
    # -m: a job that fails is recorded (child run FAILED) and the sweep goes on; true stops it
    # (jobs not yet started are skipped, the command exits non-zero).
    stop_on_failure: bool = False
    # Every configuration N times, with seeds seed, seed+1, ...: the parent reports their mean
    # and standard deviation, picks the best by the mean; an Optuna search optimizes the mean.
    replicates: int = 1
    # A sweep's parent run id: continue that sweep (its folder, children, study). Null: the
    # same command continues its last sweep unless that one ended (FINISHED or FAILED).
    resume: str | None = None
    # What a sweep ranks its jobs by, an Optuna search optimizes and its pruner watches: any
    # metric the run records at its end (final/..., test/...) or the module logs with self.log
    # (val/acc). Null: final/val_loss, else final/train_loss.
    objective: str | None = None
    direction: str = "minimize"  # minimize | maximize: which way the objective is better

    def __post_init__(self) -> None:
        count = self.replicates
        require(count >= 1, "sweep.replicates", count, "an integer >= 1 (1: one seed each)")
        _one_of("sweep.direction", self.direction, DIRECTIONS)
        if self.objective is not None:
            name = self.objective.strip()
            require(bool(name), "sweep.objective", self.objective, "a metric name like val/acc")


@dataclass
class RerunConfig:
    # `rerun=<run id>` on the command line is short for `rerun.run=<run id>`: a new run of exactly
    # the config that run recorded (plus the command line's overrides).
    run: str | None = None
    verify: bool = False  # compare the new trajectory with the old one, step by step

    def __post_init__(self) -> None:
        if self.verify:
            require(self.run is not None, "rerun.verify", True, "rerun=<run id> beside it")
