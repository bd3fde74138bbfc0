"""Which rows train, validate and test: one seeded permutation of the rows.

The validation rows are the permutation's first `floor(n * val_split)`, as every run recorded
before test splits was split (a rerun gets the same rows); the test rows are its last
`floor(n * test_split)`, so that adding a test split never moves a validation row. Without
either split the training rows keep the source's order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainlab.errors import ConfigError


@dataclass(frozen=True)
class Split:
    """Row indices of each split; `train` None: every row, in order (no split)."""

    train: torch.Tensor | None
    val: torch.Tensor | None
    test: torch.Tensor | None


def split_rows(n_rows: int, val_split: float, test_split: float, seed: int) -> Split:
    n_val, n_test = math.floor(n_rows * val_split), math.floor(n_rows * test_split)
    n_train = n_rows - n_val - n_test
    too_few = n_train < 1 or (val_split > 0 and n_val < 1) or (test_split > 0 and n_test < 1)
    if too_few:
        raise ConfigError(split_error(n_rows, val_split, test_split, n_val, n_test))
    if val_split == 0 and test_split == 0:
        return Split(train=None, val=None, test=None)
    # torch's permutation, as every recorded run was split: a rerun gets the same rows.
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed))
    return Split(
        train=order[n_val : n_rows - n_test],
        val=order[:n_val] if val_split > 0 else None,
        test=order[n_rows - n_test :] if test_split > 0 else None,
    )


def split_error(n_rows: int, val_split: float, test_split: float, n_val: int, n_test: int) -> str:
    n_train = n_rows - n_val - n_test
    if test_split == 0:
        return (
            f"data.val_split={val_split} leaves {n_train} training and {n_val} validation rows "
            f"of {n_rows}; expected at least one of each"
        )
    if val_split == 0:
        return (
            f"data.test_split={test_split} leaves {n_train} training and {n_test} test rows of "
            f"{n_rows}; expected at least one of each"
        )
    return (
        f"data.val_split={val_split} and data.test_split={test_split} leave {n_train} "
        f"training, {n_val} validation and {n_test} test rows of {n_rows}; expected at least "
        "one row in each"
    )
