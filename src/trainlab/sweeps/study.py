"""The Optuna study of a sweep: where it lives, its pruner and sampler, and a trial as a job
sees it. Imported only by Optuna sweeps and their trials (Optuna and SQLAlchemy: ~0.3 s).

The study is an RDB storage the trials reach from their own processes: `optuna.db` beside the
embedded MLflow store (its own file: MLflow and Optuna each keep an `alembic_version` table, so
they cannot share a database), or the team's PostgreSQL with a tracking server
(TRAINLAB_STUDY_DB_URI, a database of its own beside MLflow's).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    PercentilePruner,
    SuccessiveHalvingPruner,
)
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from trainlab.errors import ConfigError, one_line
from trainlab.paths import home
from trainlab.sweeps.trials import TrialJob
from trainlab.tracking.store import is_server, sqlite_path

STUDY_DB_ENV = "TRAINLAB_STUDY_DB_URI"
# How long a trial waits for another writer of a SQLite study (8 trials reporting at once each
# hold it for ~2 ms); past it, the database is reported as locked.
SQLITE_BUSY_SECONDS = 5.0
PRUNED_ATTR = "trainlab.pruned"  # user attribute: [report point, last step trained]
MEASURED_ATTR = "trainlab.measured"  # user attribute prefix: what each replicate measured

PRUNERS: dict[str, tuple[type[BasePruner], tuple[str, ...]]] = {
    "none": (NopPruner, ()),
    "median": (MedianPruner, ("n_startup_trials", "n_warmup_steps", "interval_steps")),
    "percentile": (
        PercentilePruner,
        ("percentile", "n_startup_trials", "n_warmup_steps", "interval_steps"),
    ),
    "successive_halving": (SuccessiveHalvingPruner, ("min_resource", "reduction_factor")),
    "hyperband": (HyperbandPruner, ("min_resource", "max_resource", "reduction_factor")),
}

optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own lines


def study_storage(configured: str | None, tracking_uri: str | None) -> str:
    """The study's RDB URL: the one configured, else beside the store (see above)."""
    if configured:
        path = sqlite_path(configured)
        return f"sqlite:///{path.expanduser().resolve()}" if path is not None else configured
    store = sqlite_path(tracking_uri) if tracking_uri else None
    if store is not None:
        return f"sqlite:///{store.with_name('optuna.db')}"
    if tracking_uri and is_server(tracking_uri):
        url = os.environ.get(STUDY_DB_ENV)
        if not url:
            raise ConfigError(
                f"an Optuna study beside the tracking server {tracking_uri} needs a database the "
                f"trials reach; expected {STUDY_DB_ENV}=postgresql://... (the team's PostgreSQL, "
                "a database of its own) or hydra.sweeper.storage=<an Optuna RDB URL>"
            )
        return url
    return f"sqlite:///{home() / 'optuna.db'}"


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


class _WalConnection(sqlite3.Connection):
    """A SQLite study in write-ahead-log mode, synced at checkpoints rather than at every commit:
    a trial's report costs ~8 ms instead of ~40 ms on this project's disk (measured), and a
    machine that loses power loses at most the last reports, never the database."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("pragma journal_mode=wal")
        self.execute("pragma synchronous=normal")


def open_storage(url: str, checked: bool = False) -> optuna.storages.RDBStorage:
    """The study's storage (tables created on first use), or one line on why it cannot be used.
    `checked`: the sweeper has made and checked its tables already (a trial's job: 3 ms to open
    instead of 30)."""
    kwargs: dict[str, Any] = {}
    database = sqlite_path(url)
    if database is not None:
        if not database.parent.is_dir():
            raise ConfigError(
                f"the study's database {database}: its folder does not exist; expected "
                "hydra.sweeper.storage=sqlite:///<a path in an existing folder>"
            )
        kwargs = {"connect_args": {"timeout": SQLITE_BUSY_SECONDS, "factory": _WalConnection}}
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, skip_compatibility_check=checked, skip_table_creation=checked
        )
    except Exception as err:
        raise ConfigError(
            f"the study's database {shown(url)} cannot be used: {one_line(err)}; expected an "
            "Optuna RDB URL the trials reach (hydra.sweeper.storage, or TRAINLAB_STUDY_DB_URI)"
        ) from None


def build_pruner(name: str, settings: dict[str, Any]) -> BasePruner:
    kind, keys = PRUNERS[name]
    try:
        return kind(**{key: settings[key] for key in keys})
    except (ValueError, TypeError) as err:
        given = ", ".join(f"{key}={settings[key]!r}" for key in keys)
        raise ConfigError(
            f"hydra.sweeper.pruner={name} with hydra.sweeper.pruning {given}: {one_line(err)}"
        ) from None


@dataclass(frozen=True)
class PruningGates:
    """What the median and percentile pruners check before they compare a trial with the others
    (optuna.pruners.PercentilePruner.prune, in its order)."""

    warmup: int
    interval: int
    startup: int  # completed trials needed; at least one

    @classmethod
    def of(cls, pruner: str, settings: dict[str, Any]) -> PruningGates | None:
        if pruner not in ("median", "percentile"):
            return None  # successive halving and hyperband check their rungs before reading
        return cls(
            warmup=int(settings["n_warmup_steps"]),
            interval=int(settings["interval_steps"]),
            startup=max(int(settings["n_startup_trials"]), 1),
        )


class TrialHandle:
    """One trial as a job sees it: its intermediate values, the pruner's verdict, what the job
    measured. Every call writes through to the study, so the sweeper and the other trials see it."""

    def __init__(self, trial_job: TrialJob) -> None:
        link = trial_job.link
        self.replicate, self.job = trial_job.replicate, trial_job.job
        storage = open_storage(link.storage, checked=True)
        pruner = build_pruner(link.pruner, link.pruning)
        self.study = optuna.load_study(study_name=link.study_name, storage=storage, pruner=pruner)
        study_id = storage.get_study_id_from_name(link.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial_job.trial)
        self.storage, self.study_id, self.trial_id = storage, study_id, trial_id
        self.trial = optuna.trial.Trial(self.study, trial_id)
        self.number = trial_job.trial
        self.gates = PruningGates.of(link.pruner, link.pruning)
        # The points reported so far, a resumed trial's earlier ones included.
        self.points = set(storage.get_trial(trial_id).intermediate_values)
        self.completed = 0  # trials seen COMPLETE: that count only grows

    def report(self, value: float, point: int) -> bool:
        """Report the objective at a report point; True when the pruner stops the trial."""
        self.trial.report(value, point)
        self.points.add(point)
        return self.may_stop() and self.trial.should_prune()

    def may_stop(self) -> bool:
        """False where the median or percentile pruner would say no: before its warm-up, off its
        interval, while fewer trials have completed than it waits for. It finds that out only
        after reading every finished trial (~4.5 ms a report on SQLite, a quarter of an epoch of
        a small model), so it is asked only where it could say stop; its answer is unchanged."""
        gates = self.gates
        if gates is None:
            return True
        last = max(self.points)
        if last < gates.warmup:
            return False
        nearest = (last - gates.warmup) // gates.interval * gates.interval + gates.warmup
        earlier = max((p for p in self.points if p != last), default=-1)
        if earlier >= nearest:  # not the first report point of its interval
            return False
        if self.completed < gates.startup:  # a count, not a read of every trial
            self.completed = self.storage.get_n_trials(self.study_id, TrialState.COMPLETE)
        return self.completed >= gates.startup

    def pruned(self) -> list[int] | None:
        """[report point, last step] when this trial was pruned (by its first replicate)."""
        return self.storage.get_trial_user_attrs(self.trial_id).get(PRUNED_ATTR)

    def mark_pruned(self, point: int, step: int) -> None:
        self.trial.set_user_attr(PRUNED_ATTR, [point, step])

    def measured(self, values: dict[str, float]) -> None:
        self.trial.set_user_attr(f"{MEASURED_ATTR}.{self.replicate}", values)
