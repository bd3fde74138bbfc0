"""The rows of a run: training (and validation) tensors, float64 on the CPU, with the
standardization fitted on the training rows. Engines cast and move them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from trainlab.data.lineage import DataRecord


@dataclass(frozen=True)
class Dataset:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    feature_names: list[str] = field(default_factory=list)
    target_names: list[str] = field(default_factory=list)
    # Standardization fitted on the training rows; None when it is off.
    x_mean: torch.Tensor | None = None
    x_std: torch.Tensor | None = None
    lineage: tuple[DataRecord, ...] = ()  # what the rows are, for MLflow's dataset inputs
    classes: tuple[str, ...] = ()  # classification: the class names, in label-index order

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_targets(self) -> int:
        return 1 if self.y_train.dim() == 1 else self.y_train.shape[1]

    def cast(self, dtype: torch.dtype) -> Dataset:
        """The same data in `dtype` (float32 for 32/mixed precision, float64 for 64)."""

        def to(t: torch.Tensor | None) -> torch.Tensor | None:
            # Class labels (integers) stay what they are.
            return t if t is None or not t.is_floating_point() else t.to(dtype)

        return replace(
            self,
            x_train=to(self.x_train),
            y_train=to(self.y_train),
            x_val=to(self.x_val),
            y_val=to(self.y_val),
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
        """Features scaled by the training rows' mean and std (a constant column keeps std 1)."""
        std = self.x_train.std(dim=0, unbiased=False)
        fitted = replace(
            self, x_mean=self.x_train.mean(dim=0), x_std=torch.where(std > 0, std, 1.0)
        )
        x_val = None if self.x_val is None else fitted.scale(self.x_val)
        return replace(fitted, x_train=fitted.scale(self.x_train), x_val=x_val)
