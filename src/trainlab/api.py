"""trainlab from Python: `trainlab.train(["model=mlp", "data=iris", "loss=cross_entropy"])`.

The same job as `trainlab-train` with those overrides (Hydra composes the same configs, the same
checks run, the same recorder records the same run, `TRAINLAB_HOME` and `MLFLOW_TRACKING_URI`
decide where), in this process and callable again: it never ends the process (no exit, no
os._exit) and a bad value raises `TrainError`, whose message is the line the command would
print after `trainlab-train: error:`. Hydra's global state is cleared before and after each
call, so it also works inside a notebook or a program that has composed configs of its own.

    >>> import trainlab
    >>> run = trainlab.train(["experiment=iris_softmax", "max_epochs=50"])
    >>> run.run_id, run.metrics["test/accuracy"], run.model_uri
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from trainlab.config.schema import register_configs
from trainlab.errors import one_line
from trainlab.job import run_job_result
from trainlab.paths import CONFIG_DIR, resolve_user_path
from trainlab.tracking.environment import calling


class TrainError(ValueError):
    """The job could not run or failed; the message is the one line the command line prints."""


@dataclass(frozen=True)
class Run:
    """A finished run, as it is recorded."""

    run_id: str | None  # None for an untracked run (tracking=none)
    metrics: dict[str, float]  # final/*, pred/after, test/* (with data.test_split)
    model_uri: str | None  # models:/<id>: trainlab-predict, mlflow.pyfunc.load_model
    config: dict[str, Any]  # the checked config, as config/resolved.yaml records it
    objective: float  # what a sweep would minimize: final val loss, else final train loss
    tracking_uri: str | None = None
    experiment_id: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)


def train(overrides: Sequence[str] = (), config_dir: str | Path | None = None) -> Run:
    """Train one run with these overrides (as on the command line); `config_dir`: a folder of
    your own options and presets, searched beside trainlab's (the command's --config-dir)."""
    overrides = [str(o) for o in overrides]
    token = calling.set(f"trainlab.train({overrides!r})")
    try:
        cfg = composed(overrides, config_dir)
        result = run_job_result(cfg, None)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:
        raise TrainError(one_line(err)) from None
    finally:
        calling.reset(token)
        HydraConfig.instance().cfg = None  # the next call (or the caller) composes afresh
        GlobalHydra.instance().clear()
    info = result.info
    return Run(
        run_id=info.run_id if info else None,
        metrics=dict(result.metrics),
        model_uri=info.model_uri if info else None,
        config=result.config,
        objective=result.objective,
        tracking_uri=info.uri if info else None,
        experiment_id=info.experiment_id if info else None,
        warnings=info.warnings if info else (),
    )


def composed(overrides: list[str], config_dir: str | Path | None) -> DictConfig:
    """The job's config as Hydra's command line would compose it, with its job folder (the
    checkpoints' home) made and known to trainlab as the command's would be."""
    register_configs()
    GlobalHydra.instance().clear()
    extra = []
    if config_dir is not None:
        folder = resolve_user_path(str(config_dir))
        if not folder.is_dir():
            raise TrainError(f"config_dir={str(config_dir)!r}: no such folder ({folder})")
        extra = [f"hydra.searchpath=[file://{folder}]"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="api"):
        cfg = compose("train", overrides=[*overrides, *extra], return_hydra_config=True)
    hydra_node = cfg.hydra
    with open_dict(hydra_node):
        hydra_node.runtime.output_dir = str(Path(hydra_node.run.dir).resolve())
        hydra_node.overrides.task = overrides
        hydra_node.job.name = "api"
    Path(hydra_node.runtime.output_dir).mkdir(parents=True, exist_ok=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
