"""What one job comes to: what its sweeper optimizes, and what the Python API returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainlab.tracking.messages import RunInfo


@dataclass(frozen=True)
class JobResult:
    objective: float  # final val/loss, else final train/loss (what a sweeper minimizes)
    config: dict[str, Any] = field(default_factory=dict)  # the checked config, as recorded
    metrics: dict[str, float] = field(default_factory=dict)  # final/*, pred/after, test/* ...
    info: RunInfo | None = None  # where it is recorded; None for an untracked run
