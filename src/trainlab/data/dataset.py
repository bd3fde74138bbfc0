"""The rows of a run: training, validation and test tensors on the CPU, features float64 (raw
units, or standardized with the mean and std of the training rows only), targets float64 of shape
(N, n_targets) for regression or int64 class indices of shape (N,) for classification. Engines
cast and move them.

A LightningDataModule's data (`datamodule` set) is a sample instead: its first batch as it came
(`sample`, any structure), and `x_train`/`y_train` only where that batch is an (inputs, targets)
pair, with inputs of any rank. What trainlab derives from a table (feature names, references,
standardization, the fit plots) applies where `is_table`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import lightning as L
import torch

from trainlab.data.lineage import DataRecord


@dataclass(frozen=True)
class Dataset:
    x_train: torch.Tensor | None
    y_train: torch.Tensor | None
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    feature_names: list[str] = field(default_factory=list)
    target_names: list[str] = field(default_factory=list)
    # Standardization fitted on the training rows; None when it is off.
    x_mean: torch.Tensor | None = None
    x_std: torch.Tensor | None = None
    lineage: tuple[DataRecord, ...] = ()  # what the rows are, for MLflow's dataset inputs
    # The rows kept out of training and validation (data.test_split); None without them.
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    # The class names in index order (y holds indices into it); empty for regression.
    classes: tuple[str, ...] = ()
    # data=custom: the user's LightningDataModule, which the Trainer fits with; the tensors above
    # are then its first batches (a sample: shapes, plots, the model's signature).
    datamodule: L.LightningDataModule | None = None
    sample: Any = None  # a datamodule's first training batch, of any structure
    val_sample: Any = None  # ... and its first validation batch

    @property
    def is_table(self) -> bool:
        """Rows of features: (N, features) float inputs, as trainlab's own sources give."""
        x = self.x_train
        return x is not None and x.ndim == 2 and x.is_floating_point()

    @property
    def n_features(self) -> int:
        """Features per row: a table's columns; the size of one input, flattened, otherwise."""
        if self.x_train is None:
            return 0
        return math.prod(self.x_train.shape[1:])

    @property
    def n_targets(self) -> int:
        """Target columns: one label column for classification."""
        y = self.y_train
        return 1 if y is None or y.ndim == 1 else y.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def is_classification(self) -> bool:
        return bool(self.classes)

    def cast(self, dtype: torch.dtype) -> Dataset:
        """The same data in `dtype` (float32 for 32/mixed precision, float64 for 64): features
        and float targets; class indices stay int64."""

        def to(t: torch.Tensor | None) -> torch.Tensor | None:
            return t.to(dtype) if t is not None and t.is_floating_point() else t

        return replace(
            self,
            x_train=to(self.x_train),
            y_train=to(self.y_train),
            x_val=to(self.x_val),
            y_val=to(self.y_val),
            x_test=to(self.x_test),
            y_test=to(self.y_test),
            x_mean=to(self.x_mean),
            x_std=to(self.x_std),
        )

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs to the inputs the model is trained on."""
        if self.x_mean is None or self.x_std is None:
            return x
        return (x - self.x_mean) / self.x_std

    def unscale(self, x: torch.Tensor) -> torch.Tensor:
        """Standardized inputs back to the numbers the data source gave."""
        if self.x_mean is None or self.x_std is None:
            return x
        return x * self.x_std + self.x_mean

    def standardized(self) -> Dataset:
        """Features scaled by the training rows' mean and std (a constant column keeps std 1),
        the same scaling applied to the validation and test rows."""
        std = self.x_train.std(dim=0, unbiased=False)
        fitted = replace(
            self, x_mean=self.x_train.mean(dim=0), x_std=torch.where(std > 0, std, 1.0)
        )

        def scaled(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else fitted.scale(x)

        return replace(
            fitted,
            x_train=fitted.scale(self.x_train),
            x_val=scaled(self.x_val),
            x_test=scaled(self.x_test),
        )
