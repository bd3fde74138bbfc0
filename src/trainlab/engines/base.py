"""What every engine is given and returns, and what it needs from the run's tracking.

Engines (and the callbacks of the Lightning engine) sit below tracking: they talk to the run
through the `RunHandle` protocol, which `trainlab.tracking.run.TrackedRun` implements (a test can
pass anything with these methods). An engine is the class named by `engine._target_`: it extends
its schema (config/runtime.py) with `fit(context) -> FitResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightning as L
import torch

from trainlab.config.schema import TrainConfig
from trainlab.data.dataset import Dataset
from trainlab.measures.references import References
from trainlab.measures.trajectory import RowSpec
from trainlab.signals import Interrupts


class RunHandle(Protocol):
    """The tracked run, as training sees it: hand rows over, never wait on the store."""

    @property
    def run_id(self) -> str: ...

    @property
    def opened(self) -> bool:
        """The recorder has created the run (a fit may start before it has)."""

    def add(self, keys: Sequence[str], values: torch.Tensor | Sequence[float], step: int) -> None:
        """Queue one value per key at `step`; a tensor may stay on its device until handed over."""

    def flush(self) -> None:
        """Hand every queued row to the recorder now (rows are also handed over by time)."""

    def set_tags(self, tags: dict[str, Any]) -> None: ...

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_artifact(self, local_path: Path, artifact_path: str) -> None:
        """Copy a file into the run's artifacts (the file may be replaced once this returns)."""

    def commit(self, step: int, staged: Path, last: Path, best: tuple, tags: dict) -> None:
        """Hand the rows over, then the checkpoint `staged` that makes them durable: the
        recorder renames it to `last` once they are in the store."""

    def sync(self) -> None:
        """Return once everything handed over so far is handled (the last commit included)."""

    def fit_ended(self, meanwhile: Callable[[], Any]) -> Any:
        """`meanwhile()`, returned once the fit's last commit is durable where the job waits
        for its store (`errors.RecorderStopped` if the recorder stopped before)."""

    def reopen(self) -> ResumePoint | None:
        """After `errors.RecorderStopped`: a new recorder continues the run; returns where the fit
        goes on (its last committed checkpoint; None: from the fit's start), or raises."""


class StudyTrial(Protocol):
    """A trial of an Optuna sweep as its fit sees it (sweeps/study.py's TrialHandle): what its
    study wants to hear, and the calls that tell it (callbacks/study_reports.py)."""

    number: int
    replicate: int
    prunes: bool  # the study has a pruner: its trials report at report points
    every_n_steps: int | None  # a report every n steps; None: at each epoch's end
    measures: bool  # the study wants what the job measured (an objective only the job knows)

    def named(self, run_id: str, model: str) -> None: ...

    def report(self, value: float, point: int) -> bool:
        """Report the objective at a report point; True when the pruner stops the trial."""

    def mark_pruned(self, point: int, step: int) -> None: ...

    def pruned_tags(self, step: int) -> dict[str, Any]:
        """What a pruned trial's run is tagged with, `step` its last step trained."""

    def pruned(self) -> Any:
        """Whether (and where) another replicate's report pruned the trial; None if not."""

    def measured(self, values: dict[str, float]) -> None: ...


@dataclass(frozen=True)
class ForkSource:
    """The run a fork starts from (`fork=<run id>[@<step>]`, resume/fork.py)."""

    run_id: str
    dashboard: str  # where a person sees it (its dashboard line)
    # Its recorded config: the classes its checkpoint may rebuild (checkpoints/trust.py).
    config: dict[str, Any] = field(default_factory=dict)
    # The optimizer, scheduler and model configs are its own: their state goes on as it was
    # (else new settings and a fresh schedule: callbacks/fork_start.py).
    same_optimizer: bool = True


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed fit starts: the run's checkpoint and the step it holds."""

    run_id: str
    # None: the run stopped before its first checkpoint (a continued sweep's trial): the fit
    # starts again in the same run, and the recorder skips the steps it already holds.
    checkpoint: Path | None
    step: int  # the first step the resumed fit logs
    # The batcher's shuffle state. Lightning restores it only when it stopped inside an epoch,
    # not from a checkpoint taken at the end of one (its "resumed on epoch end" case).
    loader_states: tuple[dict[str, Any], ...] = ()
    # The folder the run kept its checkpoints in, when it is still there: a requeued job goes on
    # writing there (its own Hydra folder is a new, timestamped one).
    checkpoint_dir: Path | None = None
    # A fork: a new run starting from another run's checkpoint (`run_id` names that run).
    fork: ForkSource | None = None


@dataclass(frozen=True)
class FitContext:
    """Everything a fit needs, built once before it starts (and what trainlab's callbacks read)."""

    settings: TrainConfig
    data: Dataset  # in the run's dtype, on the CPU
    module: L.LightningModule
    accelerator: str  # "cpu" or "gpu", as resolved for this machine
    run: RunHandle | None  # None: untracked (or a DDP rank that does not track)
    interrupts: Interrupts
    checkpoint_dir: Path  # a resumed run keeps the folder it started with, where it can
    ranking_metric: str = "train/loss"  # checkpoint.monitor, as resolved for this run
    rows: RowSpec = field(default_factory=RowSpec)  # what a step's row holds beside the loss
    resume_from: ResumePoint | None = None
    # What the caller computes with the trained module (its final losses), handed the fit's
    # result: done while the recorder commits the fit's last checkpoint (FitResult.after).
    after_fit: Callable[[FitResult], Any] | None = None
    trial: StudyTrial | None = None  # a trial of an Optuna sweep, opened in its study

    @property
    def references(self) -> References:
        return self.rows.references


@dataclass(frozen=True)
class FitResult:
    steps: int  # optimizer steps taken in total (a resumed fit counts the earlier ones)
    checkpoint: Path | None = None  # the last checkpoint written, when the engine writes them
    # The scalars the module logged with self.log, as the fit left them (Lightning's
    # callback_metrics), and the mean training loss of its last epoch: what a module of the
    # user's that trainlab cannot score itself ends with.
    logged: dict[str, float] = field(default_factory=dict)
    after: Any = None  # what FitContext.after_fit gave, where the engine called it


class Engine:
    """What `engine._target_` names: a training loop, built with the engine schema's keys
    (config/runtime.py), that trains with `fit(context)`. The schema is the data (the run reads
    it from its settings); the class is the behaviour."""

    def __init__(self, name: str = "", progress_bar: bool | None = None) -> None:
        self.name, self.progress_bar = name, progress_bar

    def fit(self, context: FitContext) -> FitResult:
        raise NotImplementedError
