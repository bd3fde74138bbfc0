"""What every engine is given and returns, and what it needs from the run's tracking.

Engines sit below tracking: they talk to the run through the `RunRecorder` protocol, which
`trainlab.tracking.run.TrackedRun` implements (a test can pass anything with these methods).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from trainlab.config.schema import TrainConfig
from trainlab.data.dataset import Dataset
from trainlab.models.module import RegressionModule
from trainlab.signals import Interrupts


class RunRecorder(Protocol):
    """The tracked run, as training sees it: hand rows over, never wait on the store."""

    @property
    def run_id(self) -> str: ...

    def add(self, keys: Sequence[str], values: torch.Tensor | Sequence[float], step: int) -> None:
        """Queue one value per key at `step`; a tensor may stay on its device until handed over."""

    def flush(self) -> None:
        """Hand every queued row to the recorder now (rows are also handed over by time)."""

    def set_tags(self, tags: dict[str, Any]) -> None: ...

    def log_artifact(self, local_path: Path, artifact_path: str) -> None:
        """Copy a file into the run's artifacts (the file may be replaced once this returns)."""

    def commit(self, step: int, staged: Path, last: Path, best: tuple, tags: dict) -> None:
        """Hand the rows over, then the checkpoint `staged` that makes them durable: the
        recorder renames it to `last` once they are in the store (tracking/commits.py)."""

    def sync(self) -> None:
        """Return once everything handed over so far is handled (the last commit included)."""


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed fit starts: the run's checkpoint and the step it holds."""

    run_id: str
    checkpoint: Path
    step: int  # the first step the resumed fit logs
    # The batcher's shuffle state. Lightning restores it only when it stopped inside an epoch,
    # not from a checkpoint taken at the end of one (its "resumed on epoch end" case).
    loader_states: tuple[dict[str, Any], ...] = ()
    # The folder the run kept its checkpoints in, when it is still there: a requeued job goes on
    # writing there (its own Hydra folder is a new, timestamped one).
    checkpoint_dir: Path | None = None


@dataclass(frozen=True)
class FitContext:
    """Everything a fit needs, built once before it starts."""

    settings: TrainConfig
    data: Dataset  # in the run's dtype, on the CPU
    module: RegressionModule
    accelerator: str  # "cpu" or "gpu", as resolved for this machine
    run: RunRecorder | None  # None: untracked (or a DDP rank that does not track)
    ols_loss: float | None  # the least-squares optimum of the training MSE, when it applies
    interrupts: Interrupts
    checkpoint_dir: Path  # a resumed run keeps the folder it started with, where it can
    resume_from: ResumePoint | None = None


@dataclass(frozen=True)
class FitResult:
    steps: int  # optimizer steps taken in total (a resumed fit counts the earlier ones)
    checkpoint: Path | None = None  # the last checkpoint written, when the engine writes them


Engine = Callable[[FitContext], FitResult]
