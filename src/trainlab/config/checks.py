"""Checks that need no data and no torch: a composed config becomes a checked TrainConfig or
one line. What depends on the data's shape is checked as soon as the rows are loaded
(`check_with_data`), still before any MLflow run exists.

`cfg` (a DictConfig from Hydra) and `settings` (the checked dataclasses) are kept apart by name
everywhere: everything after this module works from `settings`.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf

from trainlab.config.legacy import as_named_today
from trainlab.config.models import LinearModelConfig
from trainlab.config.runtime import DeviceConfig, TrainerConfig
from trainlab.config.schema import TrainConfig, as_plain_dict, option_name, schema_for
from trainlab.config.training import (
    HuberLossConfig,
    L1LossConfig,
    LBFGSConfig,
    MSELossConfig,
    PlateauConfig,
    SGDConfig,
)
from trainlab.errors import ConfigError

MANUAL_LOSSES = (MSELossConfig, L1LossConfig, HuberLossConfig)


def check_config(cfg: DictConfig) -> TrainConfig:
    """Build the dataclasses (their __post_init__ checks every value), then the combinations."""
    # `+key=value` can add keys at the top level, which the schema would silently drop.
    known = {f.name for f in fields(TrainConfig)}
    for key in cfg:
        if key not in known:
            raise ConfigError(
                f"{key}: not a key of the config; expected one of {', '.join(sorted(known))} "
                "(new keys go under tags: +tags.owner=me)"
            )
    try:
        settings = OmegaConf.to_object(cfg)
    except Exception:
        # Said as what it is, not as the range check of a dataclass that failed first
        # (`optimizer.lr=nan` is not > 0) or as the file system's error on a long path.
        values = OmegaConf.to_container(cfg, resolve=True)
        check_finite_values(values)
        check_path_lengths(values)
        raise
    assert isinstance(settings, TrainConfig)
    # A nan that passed the range checks (inf > 0), in any value, lists and dicts included.
    values = as_plain_dict(settings)
    check_finite_values(values)
    check_path_lengths(values)
    check_engine(settings)
    check_trainer(settings)
    check_distributed(settings)
    check_early_stop(settings)
    if settings.x_test is not None:
        parse_x_test(settings.x_test, None)
    return settings


def check_finite_values(node: Any, prefix: str = "") -> None:
    """Every number of the config is finite: `optimizer.lr=inf`, `data.noise=inf` or a NaN in
    `data.weights` pass the range checks of __post_init__ (inf > 0) and would train on, or fail
    inside the run, in NumPy's or torch's words. (x_test has its own check, parse_x_test.)"""
    items = node.items() if isinstance(node, dict) else []
    for name, value in items:
        key = f"{prefix}{name}"
        if key == "x_test" or key.endswith(".x_test"):
            continue
        if isinstance(value, dict):
            check_finite_values(value, f"{key}.")
        elif not all_finite(value):
            raise ConfigError(
                f"{key}={value!r} is not allowed: expected finite numbers (nan and inf are "
                "non-finite values)"
            )


# Where the file system stops: a longer name is `[Errno 36] File name too long` deep inside.
NAME_MAX, PATH_MAX = 255, 4096
PATH_KEYS = ("resume", "rerun", "tracking.uri")  # besides every key named `path`


def check_path_lengths(node: Any, prefix: str = "") -> None:
    """A path the file system cannot take is said as such, before anything tries to open it."""
    items = node.items() if isinstance(node, dict) else []
    for name, value in items:
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            check_path_lengths(value, f"{key}.")
            continue
        if not isinstance(value, str) or (name != "path" and key not in PATH_KEYS):
            continue
        longest = max((len(part) for part in value.split("/")), default=0)
        if len(value) > PATH_MAX or longest > NAME_MAX:
            shown = value if len(value) <= 60 else f"{value[:40]}...({len(value)} characters)"
            raise ConfigError(
                f"{key}={shown!r} is not allowed: expected a path the file system can open "
                f"(names of at most {NAME_MAX} characters, {PATH_MAX} in all)"
            )


def all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(all_finite(v) for v in value)
    return True


def check_engine(settings: TrainConfig) -> None:
    """Refuse what a hand-written loop (engine=numpy|autograd) cannot express."""
    engine = settings.engine.name
    if engine == "lightning":
        return

    def refuse(choice: str, expected: str) -> NoReturn:
        raise ConfigError(
            f"engine={engine} does not support {choice}; expected {expected} (or engine=lightning)"
        )

    if settings.data.MAKES_DATAMODULE:
        name = option_name("data", settings.data)
        refuse(f"data={name}", "a data option of rows in memory (data=seed, synthetic, csv ...)")
    if not isinstance(settings.model, LinearModelConfig):
        refuse(f"model={option_name('model', settings.model)}", "model=linear (the notes' w * x)")
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
    if settings.scheduler._target_ is not None:
        refuse(f"scheduler={option_name('scheduler', settings.scheduler)}", "scheduler=none")
    device = settings.device
    if device.precision not in ("32", "64"):
        refuse(f"device.precision={device.precision!r}", "device.precision=32 or 64")
    if device.devices != 1:
        refuse(f"device.devices={device.devices}", "device.devices=1")
    if device.num_nodes != 1:
        refuse(f"device.num_nodes={device.num_nodes}", "device.num_nodes=1")
    if engine == "numpy" and device.accelerator != "cpu":
        refuse(f"device={device.accelerator}", "device=cpu (NumPy runs on the CPU)")
    # trainer.* configures Lightning's Trainer; the notes' loops have none of it.
    for knob in fields(TrainerConfig):
        value, default = getattr(settings.trainer, knob.name), getattr(TrainerConfig(), knob.name)
        if value != default:
            refuse(
                f"trainer.{knob.name}={as_typed(value)}", f"trainer.{knob.name}={as_typed(default)}"
            )
    if settings.early_stop.enabled:
        refuse("early_stop", "early_stop.patience=null and early_stop.ols_gap=null")


def as_typed(value: Any) -> str:
    """A value as it is typed on the command line (null, true, 1.0)."""
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


def check_trainer(settings: TrainConfig) -> None:
    """Trainer knobs that cannot work with the rest of the config."""
    every = settings.trainer.check_val_every_n_epoch
    if every > 1 and settings.data.val_split > 0 and isinstance(settings.scheduler, PlateauConfig):
        # Lightning stops the fit at the first epoch whose val/loss the scheduler cannot read.
        raise ConfigError(
            f"trainer.check_val_every_n_epoch={every}: scheduler=plateau reads val/loss after "
            "every epoch; expected trainer.check_val_every_n_epoch=1 (or another scheduler)"
        )


def check_early_stop(settings: TrainConfig) -> None:
    early = settings.early_stop
    if early.ols_gap is not None and not isinstance(settings.loss, MSELossConfig):
        raise ConfigError(
            f"early_stop.ols_gap={early.ols_gap} needs loss=mse (the least-squares optimum is "
            f"the optimum of the MSE); got loss={option_name('loss', settings.loss)}"
        )
    own_rows = not settings.data.MAKES_DATAMODULE  # a datamodule validates as it says
    if early.monitor == "val/loss" and own_rows and settings.data.val_split == 0:
        raise ConfigError(
            "early_stop.monitor='val/loss' needs a validation split; expected data.val_split > 0 "
            "or early_stop.monitor=train/loss"
        )


def check_distributed(settings: TrainConfig) -> None:
    lbfgs = isinstance(settings.optimizer, LBFGSConfig)
    if lbfgs and settings.device.precision == "16-mixed":
        # Lightning's gradient scaler refuses LBFGS at the first step, once the run exists.
        raise ConfigError(
            "optimizer=lbfgs cannot train with device.precision='16-mixed' (its gradient scaler "
            "does not support LBFGS); expected device.precision=32, 64 or bf16-mixed"
        )
    if settings.device.world_size > 1 and lbfgs:
        # Its line search re-evaluates the closure on the rank's own loss: the ranks would take
        # different numbers of backward passes and wait for each other forever.
        raise ConfigError(
            "optimizer=lbfgs cannot run under DDP (each rank's line search would call backward a "
            "different number of times); expected another optimizer or device.devices=1"
        )


def check_with_data(settings: TrainConfig, n_train: int, n_features: int) -> None:
    """What depends on the loaded rows: manual engines' full batch, DDP shares, x_test width."""
    batch_size = settings.data.batch_size
    if settings.engine.name != "lightning" and batch_size not in (None, n_train):
        raise ConfigError(
            f"engine={settings.engine.name} does not support data.batch_size={batch_size}; "
            f"expected data.batch_size=null (the full batch of {n_train} rows, as in the seed) "
            "(or engine=lightning)"
        )
    check_sharding(settings.device, batch_size, n_train)
    if settings.x_test is not None:
        parse_x_test(settings.x_test, n_features)


def check_sharding(device: DeviceConfig, batch_size: int | None, n_rows: int) -> None:
    """Every DDP rank needs an equal share of every batch; stop before any process starts."""
    processes = device.world_size
    if processes == 1:
        return
    if n_rows < processes:
        raise ConfigError(
            f"device.devices * device.num_nodes = {processes} processes for {n_rows} training "
            "rows; expected at least one row per process"
        )
    if batch_size is not None and batch_size % processes:
        raise ConfigError(
            f"data.batch_size={batch_size} is the global batch and must split evenly over "
            f"{processes} processes; expected a multiple of {processes}"
        )


def parse_x_test(x_test: Any, n_features: int | None) -> list[list[float]]:
    """`x_test` as rows of finite numbers: one row [..] or several [[..], [..]]; with
    `n_features`, each row must have that many values."""
    rows = x_test if isinstance(x_test, list | tuple) else [x_test]
    if rows and not any(isinstance(r, list | tuple) for r in rows):
        rows = [rows]
    try:
        parsed = [[float(v) for v in row] for row in rows]
    except (TypeError, ValueError):
        raise ConfigError(
            f"x_test={x_test!r}: expected a list of numbers or a list of rows"
        ) from None
    if not parsed or any(not row for row in parsed) or len({len(r) for r in parsed}) > 1:
        raise ConfigError(f"x_test={x_test!r}: expected rows of the same, non-zero length")
    if not all(math.isfinite(v) for row in parsed for v in row):
        raise ConfigError(f"x_test={x_test!r}: expected finite numbers (no nan or inf)")
    if n_features is not None and len(parsed[0]) != n_features:
        raise ConfigError(
            f"x_test={x_test!r} has {len(parsed[0])} values per row; the data has "
            f"{n_features} features"
        )
    return parsed


def override_key(override: str) -> str:
    """The key an override sets: `+tags.x=1` -> `tags.x`; `optimizer=adam` -> `optimizer`."""
    return override.split("=", 1)[0].lstrip("+~")


def config_from_record(resolved: dict[str, Any]) -> DictConfig:
    """A run's recorded config (config/resolved.yaml) as a typed config, whatever the option
    files say today: each group gets the schema it was built from."""
    typed, resolved = OmegaConf.structured(TrainConfig), as_named_today(resolved)
    for group in RECORDED_GROUPS:
        typed[group] = OmegaConf.structured(schema_for(group, resolved.get(group) or {}))
    return OmegaConf.merge(typed, resolved)


RECORDED_GROUPS = (
    "data",
    "model",
    "loss",
    "optimizer",
    "scheduler",
    "device",
    "engine",
    "tracking",
)
