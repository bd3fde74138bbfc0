"""The whole run's schema (TrainConfig) and its registration in Hydra's ConfigStore.

Every option of a config group (conf/<group>/<option>.yaml) pulls in one schema dataclass and sets
only what differs from it, so each default has one home: the dataclass. The schemas are stored at
the ConfigStore's root as `schema_<group>_<option>`, not inside the groups, so that they never show
up as choices (`trainlab-train --help`, "no such option" errors). Hydra checks keys and types while
composing; the value checks run in `__post_init__` when `OmegaConf.to_object` builds the
dataclasses (config/checks.py), before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from trainlab.config.checkpoint import CheckpointConfig
from trainlab.config.data import (
    BreastCancerDataConfig,
    CsvDataConfig,
    CustomDataConfig,
    DataConfig,
    DiabetesDataConfig,
    IrisDataConfig,
    ParquetDataConfig,
    SeedDataConfig,
    SyntheticDataConfig,
    WineDataConfig,
)
from trainlab.config.models import CustomModelConfig, LinearModelConfig, MLPConfig, ModelConfig
from trainlab.config.runtime import (
    AutogradEngineConfig,
    DeviceConfig,
    EarlyStopConfig,
    EngineConfig,
    GuardConfig,
    NumpyEngineConfig,
    RerunConfig,
    SweepConfig,
    TrackingConfig,
    TrainerConfig,
)
from trainlab.config.training import (
    AdamConfig,
    AdamWConfig,
    BCEWithLogitsLossConfig,
    CosineConfig,
    CrossEntropyLossConfig,
    HuberLossConfig,
    L1LossConfig,
    LBFGSConfig,
    LossConfig,
    MSELossConfig,
    OptimizerConfig,
    PlateauConfig,
    RMSpropConfig,
    SchedulerConfig,
    SGDConfig,
    SmoothL1LossConfig,
    StepLRConfig,
)
from trainlab.config.vision import CNNConfig, DigitsDataConfig, ImagesDataConfig
from trainlab.errors import require
from trainlab.paths import CONFIG_DIR


def trainlab_callbacks() -> dict[str, Any]:
    """trainlab's own callbacks, in the order they run after each step (the rows and the line
    before the guard, so a bad step is recorded before the run stops; checkpoints last, which
    Lightning also ensures). Each is built for the run from the keys users set (guard.*,
    print_every, checkpoint.*, early_stop.*, tracking.*), or left out when the run needs none."""
    return {
        "rows": {"_target_": "trainlab.callbacks.StepRows.for_run"},
        "console": {"_target_": "trainlab.callbacks.ConsoleProgress.for_run"},
        "guard": {"_target_": "trainlab.callbacks.DivergenceGuard.for_run"},
        "early_stop": {"_target_": "trainlab.callbacks.early_stopping"},
        # A trial of an Optuna sweep reports to its study and stops when pruned (none otherwise).
        "trial": {"_target_": "trainlab.callbacks.TrialReports.for_run"},
        "checkpoints": {"_target_": "trainlab.callbacks.CommitCheckpoints.for_run"},
    }


@dataclass
class TrainConfig:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    loss: LossConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    scheduler: SchedulerConfig = MISSING
    device: DeviceConfig = MISSING
    engine: EngineConfig = MISSING
    tracking: TrackingConfig = MISSING
    sweep: SweepConfig = field(default_factory=SweepConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    rerun: RerunConfig = field(default_factory=RerunConfig)
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    # Lightning callbacks by name, each a `_target_` and its arguments (engine=lightning):
    # `+callbacks.swa._target_=lightning.pytorch.callbacks.StochasticWeightAveraging`.
    callbacks: dict[str, Any] = field(default_factory=trainlab_callbacks)
    seed: int = 0  # seeds the weights, the split and the shuffling (0 is a seed like any other)
    max_epochs: int = 100
    max_steps: int = -1  # -1: no step limit, max_epochs decides
    x_test: Any = "${data.x_test}"  # rows to predict before and after training
    # The seed's `epoch i, w = ..., loss = ...` line every N optimizer steps; 0: never; None:
    # every 10 steps for runs of up to 1000 steps, else a progress bar on a terminal (about 20
    # lines elsewhere).
    print_every: int | None = None
    experiment_name: str = "trainlab"
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # A run id or a checkpoint path: continue that MLflow run. `auto`: continue this job's
    # latest unfinished run (same config, same sweep job) from its last committed checkpoint, or
    # start fresh. null: `auto` for a requeued cluster job (SLURM, submitit), else a new run.
    resume: str | None = None
    # `<run id>` or `<run id>@<step>`: a new run that starts from that run's committed
    # checkpoint with this config (resume/fork.py); recorded as `<run id>@<step>`.
    fork: str | None = None

    def __post_init__(self) -> None:
        require(0 <= self.seed < 2**32, "seed", self.seed, "an integer from 0 to 2**32 - 1")
        require(self.max_epochs > 0, "max_epochs", self.max_epochs, "an integer > 0")
        steps = self.max_steps
        require(steps == -1 or steps > 0, "max_steps", steps, "-1 (no limit) or an integer > 0")
        if self.print_every is not None:
            require(self.print_every >= 0, "print_every", self.print_every, ">= 0 (0: silent)")
        require(
            bool(self.experiment_name.strip()), "experiment_name", self.experiment_name, "a name"
        )
        if self.rerun.run is not None:
            require(self.resume is None, "resume", self.resume, "null beside rerun=<run id>")


SCHEMAS: dict[str, dict[str, type]] = {
    "data": {
        "seed": SeedDataConfig,
        "synthetic": SyntheticDataConfig,
        "csv": CsvDataConfig,
        "parquet": ParquetDataConfig,
        "diabetes": DiabetesDataConfig,
        "iris": IrisDataConfig,
        "wine": WineDataConfig,
        "breast_cancer": BreastCancerDataConfig,
        "images": ImagesDataConfig,
        "digits": DigitsDataConfig,
        "custom": CustomDataConfig,
    },
    "model": {
        "linear": LinearModelConfig,
        "mlp": MLPConfig,
        "cnn": CNNConfig,
        "custom": CustomModelConfig,
    },
    "loss": {
        "mse": MSELossConfig,
        "l1": L1LossConfig,
        "huber": HuberLossConfig,
        "smooth_l1": SmoothL1LossConfig,
        "cross_entropy": CrossEntropyLossConfig,
        "bce_with_logits": BCEWithLogitsLossConfig,
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
        "lightning": EngineConfig,
        "autograd": AutogradEngineConfig,
        "numpy": NumpyEngineConfig,
    },
    "tracking": {"tracking": TrackingConfig},
}


def as_plain_dict(settings: TrainConfig) -> dict[str, Any]:
    """The checked config as plain nested dicts and lists: what config/resolved.yaml, the params
    and the job key are made of. The same as OmegaConf.to_container(OmegaConf.structured(...))
    for these dataclasses (tested), at a small fraction of its cost."""
    return _plain(dataclasses.asdict(settings))


# Keys added since runs first recorded their job key (config/checkpoint.py): at their schema's
# default they are left out of a job's identity, so that `resume=auto` and a requeued cluster
# job still find a run recorded before them. A key added later belongs here.
ADDED_SINCE_JOB_KEYS = (
    "callbacks",
    "data._target_",
    "data.test_split",
    "data.classes",
    "data.n_classes",
    "engine._target_",
    "trainer._target_",
    "trainer.log_every_n_steps",
    "trainer.limit_train_batches",
    "trainer.limit_val_batches",
    "trainer.val_check_interval",
    "trainer.min_epochs",
    "trainer.min_steps",
    "trainer.num_sanity_val_steps",
    "trainer.enable_model_summary",
    "trainer.benchmark",
    "trainer.detect_anomaly",
    "sweep.replicates",
    "sweep.objective",
    "sweep.direction",
    "fork",
)


def job_identity(settings: TrainConfig) -> dict[str, Any]:
    """What identifies a job (config/checkpoint.py's job_key hashes it): the checked config,
    without the keys added since job keys exist where they hold their default."""
    resolved = as_plain_dict(settings)
    if "model_format" in resolved.get("tracking", {}):  # every model is logged as pt2 now: keyed
        resolved["tracking"]["model_format"] = "pickle"  # as the old default, the same job
    for key in ADDED_SINCE_JOB_KEYS:
        *path, leaf = key.split(".")
        node, plain = settings, resolved
        for part in path:
            node, plain = getattr(node, part), plain[part]
        if not hasattr(node, leaf):  # a key of other options (data.n_classes: synthetic's)
            continue
        default = _field_default(type(node), leaf)
        if isinstance(default, dict):  # by entry: a callback the user added is part of the job
            kept = {k: v for k, v in plain[leaf].items() if default.get(k) != v}
            plain[leaf] = kept
            if kept:
                continue
        if plain.get(leaf) == default or plain.get(leaf) == {}:
            plain.pop(leaf, None)
    return resolved


def _field_default(schema: type, name: str) -> Any:
    found = next(f for f in dataclasses.fields(schema) if f.name == name)
    if found.default_factory is not dataclasses.MISSING:
        return found.default_factory()
    return found.default


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def schema_name(group: str, option: str) -> str:
    """The ConfigStore name of a schema: what an option file's defaults list pulls in."""
    return f"schema_{group}_{option}"


def register_configs() -> None:
    """Put every schema in Hydra's ConfigStore (idempotent): at the root as `schema_<group>_<option>`
    (what option files and a user's own configs pull in), and as the option `<group>=<option>`
    itself unless an option file conf/<group>/<option>.yaml documents it or sets values."""
    store = ConfigStore.instance()
    store.store(name="schema_train", node=TrainConfig)
    for group, options in SCHEMAS.items():
        for option, node in options.items():
            store.store(name=schema_name(group, option), node=node)
            # A group of one schema (device, tracking) has its options in files only.
            if option != group and not (CONFIG_DIR / group / f"{option}.yaml").is_file():
                store.store(group=group, name=option, node=node)


def option_name(group: str, node: Any) -> str:
    """The option a checked config node came from (`optimizer=adam`), for messages."""
    names = [name for name, schema in SCHEMAS[group].items() if type(node) is schema]
    return names[0] if names else type(node).__name__


def schema_for(group: str, recorded: dict[str, Any]) -> type:
    """The schema a recorded group (a run's config/resolved.yaml) was built from: by `name` for
    data and engine, by `_target_` for the others, by the group's only schema otherwise."""
    options = SCHEMAS[group]
    if len(options) == 1:
        return next(iter(options.values()))
    field_name = "name" if group in ("data", "engine") else "_target_"
    value = recorded.get(field_name)
    for schema in options.values():
        if schema.__dataclass_fields__[field_name].default == value:
            return schema
    raise ValueError(f"{group}: no schema has {field_name}={value!r}")
