"""The sweeper's schema, registered as `hydra/sweeper=optuna` with its `sampler` group.

The keys users already have are kept from hydra-optuna-sweeper 1.3 (which pinned optuna < 3):
`sampler` (tpe, random, cmaes, grid, nsgaii; `hydra.sweeper.sampler.seed`), `direction`,
`n_trials`, `n_jobs`, `storage`, `study_name`, `params` (`optimizer.lr: tag(log, interval(0.001,
0.3))`). New: `pruner` and its `pruning` settings, `objectives`. Hydra imports this module when it
scans its plugins at every start, so it imports nothing but Hydra: Optuna only once a search runs.
"""

# No `from __future__ import annotations`: Hydra runs this module without registering it in
# sys.modules, where dataclasses would look its string annotations up.
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband", "wilcoxon")


@dataclass
class SamplerConfig:
    _target_: str = MISSING
    seed: int | None = None


@dataclass
class TPESamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.TPESampler"
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    constant_liar: bool = True  # trials of one batch (n_jobs) spread out instead of repeating


@dataclass
class RandomSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.CmaEsSampler"
    sigma0: float | None = None
    n_startup_trials: int = 1
    popsize: int | None = None


@dataclass
class GridSamplerConfig(SamplerConfig):
    # The grid is the search space's choices (hydra.sweeper.params), every combination once.
    _target_: str = "optuna.samplers.GridSampler"


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.NSGAIISampler"
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class PruningConfig:
    """When a trial reports, and each pruner's settings (Optuna's names; a pruner reads its own).
    Steps are report points: epochs (0, 1, ...), or global steps with every_n_steps."""

    every_n_steps: int | None = None  # null: report at the end of every epoch
    n_startup_trials: int = 5  # median, percentile: trials that finish before any is pruned
    n_warmup_steps: int = 0  # median, percentile: report points before pruning starts
    interval_steps: int = 1  # median, percentile: prune only at every k-th report point
    percentile: float = 25.0  # percentile: prune below this percentile of the finished trials
    min_resource: Any = "auto"  # successive_halving (auto), hyperband (set 1 for report points)
    max_resource: Any = "auto"  # hyperband
    reduction_factor: int = 3  # successive_halving, hyperband
    p_threshold: float = 0.1  # wilcoxon: prune when worse than the best trial at this p-value
    n_startup_steps: int = 2  # wilcoxon: report points before a trial can be pruned


@dataclass
class OptunaSweeperConfig:
    _target_: str = "hydra_plugins.trainlab_sweeper.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sampler is built by the search, with the grid's choices
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: SamplerConfig = MISSING
    direction: str = "minimize"  # of the job's objective (final val/loss, else train/loss)
    # Several objectives, each `name:minimize` or `name:maximize`, e.g. on the command line
    # hydra.sweeper.objectives=[loss:minimize,fit_seconds:minimize]. Names: loss (the job's
    # objective), fit_seconds (the fit's wall time), parameters (the model's trainable
    # parameters). Empty: the one objective `loss` in `direction`.
    objectives: list[str] = field(default_factory=list)
    # Where the study lives (an Optuna RDB URL). Null: optuna.db beside the embedded MLflow
    # store; with a tracking server, $TRAINLAB_STUDY_DB_URI (the team's PostgreSQL).
    storage: str | None = None
    study_name: str | None = None  # null: a new trainlab-<the sweep's key>-<8 hex> per new sweep
    n_trials: int = 20  # trials in all, a resumed sweep's included
    n_jobs: int = 2  # trials at once, through the configured launcher
    # With hydra/launcher=parallel: a new trial starts as soon as any ends (false: batches of
    # n_jobs, told when the whole batch is back, as with every other launcher).
    asynchronous: bool = True
    pruner: str = "none"  # none | median | percentile | successive_halving | hyperband | wilcoxon
    pruning: PruningConfig = field(default_factory=PruningConfig)
    params: dict[str, str] | None = None  # the search space, in Hydra's override syntax


SAMPLERS = {
    "tpe": TPESamplerConfig,
    "random": RandomSamplerConfig,
    "cmaes": CmaEsSamplerConfig,
    "grid": GridSamplerConfig,
    "nsgaii": NSGAIISamplerConfig,
}

store = ConfigStore.instance()
store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConfig, provider="trainlab")
for _name, _node in SAMPLERS.items():
    store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="trainlab")
