"""Schemas of the `data` group: where the rows come from and how they are split and batched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from trainlab.errors import require


@dataclass
class DataConfig:
    # The source class (data/sources.py), which extends its schema with arrays().
    _target_: str = MISSING
    name: str = MISSING
    val_split: float = 0.0  # fraction of rows held out for val/loss
    standardize: bool = False  # scale features with the training rows' mean and std
    batch_size: int | None = None  # None: the whole training set in one batch (the seed)
    shuffle: bool = True
    x_test: Any = None  # one input row (list) or several (list of lists) to predict

    def __post_init__(self) -> None:
        require(0.0 <= self.val_split < 1.0, "data.val_split", self.val_split, "0 <= x < 1")
        if self.batch_size is not None:
            require(self.batch_size > 0, "data.batch_size", self.batch_size, "an integer > 0")


@dataclass
class SeedDataConfig(DataConfig):
    """Note 20 of the seed: X = [1, 2, 3, 4], Y = 2X, predict f(5)."""

    _target_: str = "trainlab.data.sources.SeedSource"
    name: str = "seed"
    x: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0, 4.0])
    y: list[float] = field(default_factory=lambda: [2.0, 4.0, 6.0, 8.0])
    x_test: Any = field(default_factory=lambda: [5.0])

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.x) > 0, "data.x", self.x, "at least one value")
        require(len(self.x) == len(self.y), "data.y", self.y, f"{len(self.x)} values like data.x")


@dataclass
class SyntheticDataConfig(DataConfig):
    """Y = X W^T + b + noise, with X ~ N(0, 1); W drawn from data_seed unless given."""

    _target_: str = "trainlab.data.sources.SyntheticSource"
    name: str = "synthetic"
    n_samples: int = 256
    n_features: int = 3
    n_targets: int = 1
    noise: float = 0.1  # standard deviation of the Gaussian noise added to Y
    weights: list[float] | None = None  # true weights, row-major (n_targets x n_features)
    bias: float = 0.0
    data_seed: int = 1234  # seed for the true weights, X and the noise

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.n_samples > 0, "data.n_samples", self.n_samples, "an integer > 0")
        require(self.n_features > 0, "data.n_features", self.n_features, "an integer > 0")
        require(self.n_targets > 0, "data.n_targets", self.n_targets, "an integer > 0")
        require(self.noise >= 0, "data.noise", self.noise, "a standard deviation >= 0")
        require(self.data_seed >= 0, "data.data_seed", self.data_seed, "an integer >= 0")
        if self.weights is not None:
            size = self.n_features * self.n_targets
            require(len(self.weights) == size, "data.weights", self.weights, f"{size} values")


@dataclass
class CsvDataConfig(DataConfig):
    """A CSV file with a header row; every feature and target column holds numbers."""

    _target_: str = "trainlab.data.sources.CsvSource"
    name: str = "csv"
    path: str = MISSING  # absolute, or relative to the folder the command runs in
    target: Any = MISSING  # one column name or a list of names
    features: list[str] | None = None  # None: every column but the target(s)
    delimiter: str = ","

    def __post_init__(self) -> None:
        super().__post_init__()
        # A character that can be part of a number or a quote would cut numbers apart silently.
        usable = len(self.delimiter) == 1 and not (
            self.delimiter.isalnum() or self.delimiter in ".+-\"'\r\n"
        )
        require(
            usable, "data.delimiter", self.delimiter,
            "one character that is not a letter, digit, sign, point, quote or newline (, ; | tab)",
        )  # fmt: skip


@dataclass
class DiabetesDataConfig(DataConfig):
    """scikit-learn's 442 x 10 diabetes data, shipped inside scikit-learn (no download)."""

    _target_: str = "trainlab.data.sources.DiabetesSource"
    name: str = "diabetes"
    standardize: bool = True
    val_split: float = 0.2
