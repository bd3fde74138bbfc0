"""What a data source gives: every row of the data set in raw units, before the split, and the
checks every source's rows pass (numpy only, no torch: trainlab-evaluate and bench row D1 in
docs/performance.md use it without the trainer)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainlab.errors import ConfigError

TASKS = ("regression", "classification")


@dataclass(frozen=True)
class RawData:
    """x: (N, n_features) float64. y: (N, n_targets) float64 for regression; for classification
    (N,) int64 indices into `classes`, the class names in index order (empty for regression)."""

    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target_names: list[str]
    classes: tuple[str, ...] = ()


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task={task!r}: expected one of {', '.join(TASKS)}")


def checked(raw: RawData) -> RawData:
    """The rows, once every value is one the trainer can use; else one line naming the first
    row that is not (rows count from 0, after a file's header)."""
    groups = [("features", raw.x)] if raw.classes else [("features", raw.x), ("targets", raw.y)]
    for name, values in groups:
        # NaN and inf make the sum non-finite: one pass without a mask the size of the data
        # (a sum that overflows takes the exact look, and passes).
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(values.sum()):
                continue
        finite = np.isfinite(values)
        if not finite.all():
            row = int(np.argwhere(~finite)[0][0])
            raise ConfigError(
                f"data: {name} contain NaN or inf (first at row {row}); expected finite numbers"
            )
    if raw.classes:
        check_labels(raw)
    return raw


def check_labels(raw: RawData) -> None:
    assert raw.y.ndim == 1 and raw.y.dtype == np.int64, "labels are int64 class indices"
    assert len(raw.y) == 0 or 0 <= raw.y.min() <= raw.y.max() < len(raw.classes)
    present = np.unique(raw.y)
    if len(present) < 2:
        (name,) = raw.target_names
        only = raw.classes[int(present[0])] if len(present) else None
        raise ConfigError(
            f"data: the target {name!r} holds one class ({only!r}) in all {len(raw.y)} rows; "
            "expected at least two classes"
        )
