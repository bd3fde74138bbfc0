"""A table as a LightningDataModule: the base class of the built-in table sources (seed,
synthetic, csv, parquet and scikit-learn's sets; data/sources.py).

A source says where its rows come from (`arrays`: features, and numbers or class labels as the
task asks); this class checks them (data/arrays.py), splits them with the seeded permutation
every option uses, standardizes them with the training rows' mean and std when asked, and
serves them (data/in_memory.py). Its `dataset` is the same rows as trainlab's engines take them
(data/dataset.py): the notes' numpy and autograd engines and the references need the tensors
themselves, and the Lightning engine batches them in the run's precision.

Adding a table source is a schema (config/data.py: its fields, checked, and its `_target_`)
and a subclass of this class whose constructor takes those fields.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainlab.data.arrays import RawData, check_task, checked
from trainlab.data.dataset import Dataset
from trainlab.data.in_memory import InMemoryDataModule, Rows
from trainlab.data.lineage import Origin, describe
from trainlab.data.splits import split_rows
from trainlab.errors import ConfigError


class TableDataModule(InMemoryDataModule):
    """Rows of features and targets, split, scaled and batched the same way for every source."""

    def __init__(
        self,
        name: str = "table",
        val_split: float = 0.0,
        test_split: float = 0.0,
        standardize: bool = False,
        batch_size: int | None = None,
        shuffle: bool = True,
        x_test: Any = None,
        seed: int = 0,
        task: str = "regression",
    ) -> None:
        super().__init__(val_split, test_split, batch_size, shuffle, seed)
        check_task(task)
        self.name, self.standardize, self.task = name, standardize, task
        self.x_test = x_test  # rows to predict after the run (trainlab-train prints them)
        self.table: Dataset | None = None

    def arrays(self) -> RawData:
        """Every raw row of the source: features, and targets as `self.task` asks."""
        raise NotImplementedError

    def origin(self) -> Origin:
        """What the lineage names as the rows' source: a built-in set, made by code."""
        return Origin(name=self.name, source=self.name, source_type="code")

    @property
    def dataset(self) -> Dataset:
        """The rows as trainlab's engines take them (set up on first use)."""
        self.setup()
        assert self.table is not None
        return self.table

    def make_splits(self) -> dict[str, Rows]:
        self.table = self.read()
        named = {
            "train": (self.table.x_train, self.table.y_train),
            "val": (self.table.x_val, self.table.y_val),
            "test": (self.table.x_test, self.table.y_test),
        }
        return {name: (x, y) for name, (x, y) in named.items() if x is not None and y is not None}

    def read(self) -> Dataset:
        """The checked rows, split (seeded) and standardized (when asked)."""
        raw = checked(self.arrays())
        x = torch.from_numpy(np.require(raw.x, np.float64, ("C", "W")))
        y = torch.from_numpy(np.require(raw.y, np.int64 if raw.classes else np.float64, ("C", "W")))
        split = split_rows(len(x), self.val_split, self.test_split, self.seed)

        def rows(index: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
            return (None, None) if index is None else (x[index], y[index])

        x_train, y_train = (x, y) if split.train is None else rows(split.train)
        (x_val, y_val), (x_test, y_test) = rows(split.val), rows(split.test)
        assert x_train is not None and y_train is not None
        if self.batch_size is not None and self.batch_size > len(x_train):
            raise ConfigError(
                f"data.batch_size={self.batch_size} is larger than the {len(x_train)} training "
                "rows; expected at most that many (or null for the full batch)"
            )
        named = {
            "training": (x_train, y_train),
            "validation": (x_val, y_val),
            "test": (x_test, y_test),
        }
        splits = {c: (sx.numpy(), sy.numpy()) for c, (sx, sy) in named.items() if sx is not None}
        data = Dataset(
            x_train=x_train,
            y_train=y_train,
            x_val=x_val,
            y_val=y_val,
            x_test=x_test,
            y_test=y_test,
            feature_names=raw.feature_names,
            target_names=raw.target_names,
            classes=raw.classes,
            lineage=describe(
                self.origin(), splits, raw.feature_names, raw.target_names, raw.classes
            ),
        )
        return data.standardized() if self.standardize else data
