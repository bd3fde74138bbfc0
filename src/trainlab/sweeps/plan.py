"""An Optuna search's plan: its space, objectives, study, pruner and budget, read from the
sweeper's config and checked before the sweep's parent run exists (one line for each thing
wrong), and the warnings a plan deserves (a pruner that cannot prune within n_trials)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trainlab.errors import ConfigError
from trainlab.paths import tracking_uri
from trainlab.sweeps.space import grid_choices, search_space
from trainlab.sweeps.state import sweep_arguments
from trainlab.sweeps.study import PRUNERS, build_pruner, open_storage, study_storage
from trainlab.sweeps.trials import MEASURED
from trainlab.tracking.store_checks import absolute_uri

DIRECTIONS = ("minimize", "maximize")
OBJECTIVES = ("loss", *MEASURED)


@dataclass
class Plan:
    """Everything a search needs, checked before the sweep's parent run exists."""

    space: dict[str, Any]
    fixed: dict[str, str]
    objectives: dict[str, str]  # name -> direction, in the study's order
    storage: str
    study_name: str
    pruner: str
    pruning: dict[str, Any]
    n_trials: int
    n_jobs: int
    replicates: int
    seed: int


def plan_search(config: DictConfig, arguments: list[str] | None = None) -> Plan:
    settings = config.hydra.sweeper
    space, fixed = search_space(
        sweep_arguments(config) if arguments is None else _with_params(settings, arguments)
    )
    named = [str(o).partition(":") for o in settings.objectives or []]
    # sweep.objective and sweep.direction say it for grids and searches alike; a search's own
    # hydra.sweeper.direction still counts where they are left at their defaults.
    direction = str(OmegaConf.select(config, "sweep.direction", default="minimize"))
    if (
        OmegaConf.select(config, "sweep.objective", default=None) is None
        and direction == "minimize"
    ):
        direction = str(settings.direction)
    objectives = {n: d for n, _, d in named} if named else {"loss": direction}
    for name, direction in objectives.items():
        if name not in OBJECTIVES:
            raise ConfigError(
                f"hydra.sweeper.objectives: {name!r} is not an objective; expected "
                f"{', '.join(OBJECTIVES)} (each name:minimize or name:maximize)"
            )
        if direction not in DIRECTIONS:
            raise ConfigError(
                f"hydra.sweeper.objectives: {name}:{direction} is not allowed: expected "
                f"{name}:minimize or {name}:maximize"
            )
    pruner = str(settings.pruner)
    if pruner not in PRUNERS:
        raise ConfigError(
            f"hydra.sweeper.pruner={pruner!r} is not allowed: expected one of {', '.join(PRUNERS)}"
        )
    if pruner != "none" and len(objectives) > 1:
        raise ConfigError(
            f"hydra.sweeper.pruner={pruner} with {len(objectives)} objectives: Optuna prunes "
            "single-objective studies only; expected hydra.sweeper.pruner=none"
        )
    pruning = OmegaConf.to_container(settings.pruning)
    build_pruner(pruner, pruning)  # its settings' own checks
    every = pruning.get("every_n_steps")
    if every is not None and every < 1:
        raise ConfigError(
            f"hydra.sweeper.pruning.every_n_steps={every} is not allowed: expected an integer "
            ">= 1, or null (every epoch)"
        )
    replicates = int(OmegaConf.select(config, "sweep.replicates", default=1) or 1)
    if replicates > 1 and "seed" in space:
        raise ConfigError(
            f"sweep.replicates={replicates} gives each trial its seeds; expected seed not in the "
            "search space"
        )
    n_trials, n_jobs = int(settings.n_trials), int(settings.n_jobs)
    if n_trials < 1 or n_jobs < 1:
        raise ConfigError(
            f"hydra.sweeper.n_trials={n_trials}, n_jobs={n_jobs}: expected integers >= 1"
        )
    if str(settings.sampler._target_).endswith("GridSampler"):
        grid_choices(space)  # every key must have values to list
    uri = absolute_uri(config.tracking.uri or tracking_uri()) if config.tracking.enabled else None
    return Plan(
        space=space,
        fixed=fixed,
        objectives=objectives,
        storage=study_storage(settings.storage, uri),
        study_name=str(settings.study_name or "trainlab"),
        pruner=pruner,
        pruning=pruning,
        n_trials=n_trials,
        n_jobs=n_jobs,
        replicates=replicates,
        seed=int(fixed.get("seed", config.seed)),
    )


def check_search(config: DictConfig) -> None:
    """Before the parent run: the plan, and a storage that opens (its tables made once here,
    before trials on several processes would race to make them)."""
    open_storage(plan_search(config).storage)


def _with_params(settings: DictConfig, arguments: list[str]) -> list[str]:
    params = settings.params or {}
    return [f"{key}={value}" for key, value in params.items()] + list(arguments)


def pruning_warning(plan: Plan) -> str | None:
    """Why the pruner will prune nothing in this search, if it cannot: the median and
    percentile pruners compare a trial with `n_startup_trials` completed ones first."""
    startup = int(plan.pruning.get("n_startup_trials", 0))
    if plan.pruner in ("median", "percentile") and plan.n_trials <= startup:
        return (
            f"hydra.sweeper.pruner={plan.pruner} prunes nothing within n_trials={plan.n_trials}: "
            f"it waits for {startup} completed trials (hydra.sweeper.pruning.n_startup_trials); "
            f"expected n_trials > {startup} or a lower n_startup_trials"
        )
    return None
