"""The Optuna study of a sweep: where it lives, its pruner and sampler, and a trial as a job
sees it. Imported only by Optuna sweeps and their trials (Optuna and SQLAlchemy: slow imports).

The study is an RDB storage the trials reach from their own processes: `optuna.db` beside the
embedded MLflow store (its own file: MLflow and Optuna each keep an `alembic_version` table, so
they cannot share a database), or the team's PostgreSQL with a tracking server
(TRAINLAB_STUDY_DB_URI, a database of its own beside MLflow's).
"""

from __future__ import annotations

import os
import sqlite3
import time
import warnings
from collections.abc import Collection
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
    WilcoxonPruner,
)
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from trainlab.errors import ConfigError, one_line
from trainlab.paths import home
from trainlab.sweeps.trials import TrialJob
from trainlab.tracking.store_checks import is_server, sqlite_path
from trainlab.tracking.tags import PRUNED_STEP_TAG, PRUNED_TAG

STUDY_DB_ENV = "TRAINLAB_STUDY_DB_URI"
# How long a trial waits for another writer of a SQLite study (each report holds it briefly,
# even with many trials reporting at once); past it, the database is reported as locked.
SQLITE_BUSY_SECONDS = 5.0
# How old the copy of the completed trials a trial's median or percentile pruner reads may be.
COMPLETED_FRESH_SECONDS = 1.0
PRUNED_ATTR = "trainlab.pruned"  # user attribute: [report point, last step trained]
MEASURED_ATTR = "trainlab.measured"  # user attribute prefix: what each replicate measured
RUN_ATTR, MODEL_ATTR = "mlflow.run_id", "trainlab.model"  # user attributes: its run, its model

PRUNERS: dict[str, tuple[type[BasePruner], tuple[str, ...]]] = {
    "none": (NopPruner, ()),
    "median": (MedianPruner, ("n_startup_trials", "n_warmup_steps", "interval_steps")),
    "percentile": (
        PercentilePruner,
        ("percentile", "n_startup_trials", "n_warmup_steps", "interval_steps"),
    ),
    "successive_halving": (SuccessiveHalvingPruner, ("min_resource", "reduction_factor")),
    "hyperband": (HyperbandPruner, ("min_resource", "max_resource", "reduction_factor")),
    # A trial's report points compared one by one with the best trial's (a signed-rank test):
    # for searches whose points are replicates or folds of one measure.
    "wilcoxon": (WilcoxonPruner, ("p_threshold", "n_startup_steps")),
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
    a trial's report costs a fraction of a synced commit's time, and a
    machine that loses power loses at most the last reports, never the database."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("pragma journal_mode=wal")
        self.execute("pragma synchronous=normal")


def open_storage(url: str, checked: bool = False) -> optuna.storages.RDBStorage:
    """The study's storage (tables created on first use), or one line on why it cannot be used.
    `checked`: the sweeper has made and checked its tables already (a trial's job then skips
    checking them again, most of what opening costs)."""
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
        with warnings.catch_warnings():  # WilcoxonPruner is "experimental": said in the docs
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return kind(**{key: settings[key] for key in keys})
    except (ValueError, TypeError) as err:
        given = ", ".join(f"{key}={settings[key]!r}" for key in keys)
        raise ConfigError(
            f"hydra.sweeper.pruner={name} with hydra.sweeper.pruning {given}: {one_line(err)}"
        ) from None


@dataclass(frozen=True)
class PruningGates:
    """Where the median and percentile pruners can say stop: past their warm-up, at the first
    report point of each interval (optuna.pruners.PercentilePruner.prune checks these before it
    compares a trial with the others)."""

    warmup: int
    interval: int

    @classmethod
    def of(cls, pruner: str, settings: dict[str, Any]) -> PruningGates | None:
        if pruner not in ("median", "percentile"):
            return None
        return cls(warmup=int(settings["n_warmup_steps"]), interval=int(settings["interval_steps"]))

    def open(self, points: Collection[int]) -> bool:
        if not points:
            return False
        last = max(points)
        if last < self.warmup:
            return False
        nearest = (last - self.warmup) // self.interval * self.interval + self.warmup
        return max((p for p in points if p != last), default=-1) < nearest


class TrialHandle:
    """One trial as a job sees it: its intermediate values, the pruner's verdict, what the job
    measured. Every call writes through to the study, so the sweeper and the other trials see it."""

    def __init__(self, trial_job: TrialJob) -> None:
        link = trial_job.link
        self.replicate, self.job = trial_job.replicate, trial_job.job
        storage = open_storage(link.storage, checked=True)
        self.pruner = build_pruner(link.pruner, link.pruning)
        self.study = optuna.load_study(
            study_name=link.study_name, storage=storage, pruner=self.pruner
        )
        study_id = storage.get_study_id_from_name(link.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial_job.trial)
        self.storage, self.study_id, self.trial_id = storage, study_id, trial_id
        self.trial = optuna.trial.Trial(self.study, trial_id)
        self.number = trial_job.trial
        # What the trial's fit reports (engines/base.py's StudyTrial, callbacks/study_reports.py).
        self.prunes = link.pruner != "none"
        self.every_n_steps: int | None = link.pruning.get("every_n_steps")
        self.measures = link.reports
        self.gates = PruningGates.of(link.pruner, link.pruning)
        # What the trial has reported, a resumed trial's earlier points included (read at the
        # first report: a trial that never reports does not pay for it).
        self.values: dict[int, float] | None = None
        self.completed: optuna.Study | None = None
        self.copied = 0.0  # when, time.monotonic()

    def report(self, value: float, point: int) -> bool:
        """Report the objective at a report point; True when the pruner stops the trial.

        A continued trial (its run resumed from its last committed checkpoint) may have
        reported points past that checkpoint before it was killed: its first report here drops
        them, and each point is written again as this run trains it (the storage's write
        replaces a point's value; Optuna's `Trial.report` would keep the stale one and warn)."""
        if self.values is None:  # the first report
            earlier = self.storage.get_trial(self.trial_id).intermediate_values
            self.values = {p: v for p, v in earlier.items() if p < point}
        self.storage.set_trial_intermediate_value(self.trial_id, point, float(value))
        self.values[point] = float(value)
        if self.gates is None:  # successive halving, hyperband: they record their rungs as they go
            trial = self.storage.get_trial(self.trial_id)
            trial.intermediate_values = dict(self.values)
            return bool(self.pruner.prune(self.study, trial))
        if not self.may_stop():
            return False
        return bool(self.pruner.prune(self.completed_trials(), self.as_reported()))

    def may_stop(self) -> bool:
        """Whether the median or percentile pruner could say stop at the last report point."""
        return self.gates is None or self.gates.open(self.values or {})

    def completed_trials(self) -> optuna.Study:
        """The median and percentile pruners read only the study's completed trials: a copy of
        them in this process, read again once it is COMPLETED_FRESH_SECONDS old. Reading them
        (and this trial's growing history with them) at every report cost a sizeable part of a
        small model's epoch on SQLite; the pruner itself decides, as in the study. A
        trial that completed in the last second elsewhere counts from the next report on."""
        now = time.monotonic()
        if self.completed is None or now - self.copied >= COMPLETED_FRESH_SECONDS:
            trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            self.completed = optuna.create_study(direction=self.study.direction)
            self.completed.add_trials(trials)
            self.copied = now
        return self.completed

    def as_reported(self) -> optuna.trial.FrozenTrial:
        """This trial as the pruner reads it: its report points and values."""
        return optuna.trial.FrozenTrial(
            number=self.number, state=TrialState.RUNNING, value=None, datetime_start=None,
            datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={},
            intermediate_values=dict(self.values or {}), trial_id=self.trial_id,
        )  # fmt: skip

    def pruned(self) -> list[int] | None:
        """[report point, last step] when this trial was pruned (by its first replicate)."""
        return self.storage.get_trial_user_attrs(self.trial_id).get(PRUNED_ATTR)

    def mark_pruned(self, point: int, step: int) -> None:
        self.trial.set_user_attr(PRUNED_ATTR, [point, step])

    def pruned_tags(self, step: int) -> dict[str, Any]:
        return {PRUNED_TAG: "true", PRUNED_STEP_TAG: step}

    def named(self, run_id: str, model: str) -> None:
        """The trial's user attributes name this replicate's MLflow run and its model."""
        suffix = f".{self.replicate}" if self.replicate else ""
        self.trial.set_user_attr(f"{RUN_ATTR}{suffix}", run_id)
        self.trial.set_user_attr(f"{MODEL_ATTR}{suffix}", model)

    def measured(self, values: dict[str, float]) -> None:
        self.trial.set_user_attr(f"{MEASURED_ATTR}.{self.replicate}", values)
