"""Schemas of the `data` group: where the rows come from and how they are split and batched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import MISSING

from trainlab.errors import ConfigError, require


@dataclass
class DataConfig:
    # A LightningDataModule (`_target_` names one, or data=custom's): no rows in memory for the
    # notes' own engines, no references; the keys NOT_APPLICABLE names say nothing of its runs.
    MAKES_DATAMODULE: ClassVar[bool] = False
    NOT_APPLICABLE: ClassVar[tuple[str, ...]] = ()
    # The LightningDataModule class the data comes from (data/sources.py's tables,
    # data/images.py's images), built with the schema's fields and the run's seed.
    _target_: str = MISSING
    name: str = MISSING
    val_split: float = 0.0  # fraction of rows held out for val/loss
    # Fraction of rows kept out of training and validation, for the held-out evaluation at the
    # end; they come from the same seeded permutation, after the validation rows.
    test_split: float = 0.0
    standardize: bool = False  # scale features with the training rows' mean and std
    batch_size: int | None = None  # None: the whole training set in one batch (the seed)
    shuffle: bool = True
    x_test: Any = None  # one input row (list) or several (list of lists) to predict

    def __post_init__(self) -> None:
        require(0.0 <= self.val_split < 1.0, "data.val_split", self.val_split, "0 <= x < 1")
        require(0.0 <= self.test_split < 1.0, "data.test_split", self.test_split, "0 <= x < 1")
        require(
            self.val_split + self.test_split < 1.0,
            "data.test_split",
            self.test_split,
            f"data.val_split + data.test_split < 1 (data.val_split is {self.val_split})",
        )
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
    """Y = X W^T + b + noise, with X ~ N(0, 1); W drawn from data_seed unless given. With
    `n_classes`, W has a row per class and the label of a row is the class whose score is the
    largest (a seeded linear rule with noise), so that tests and benchmarks can make labelled
    data of any size."""

    _target_: str = "trainlab.data.sources.SyntheticSource"
    name: str = "synthetic"
    n_samples: int = 256
    n_features: int = 3
    n_targets: int = 1
    noise: float = 0.1  # standard deviation of the Gaussian noise added to Y
    weights: list[float] | None = None  # true weights, row-major (n_targets x n_features)
    bias: float = 0.0
    data_seed: int = 1234  # seed for the true weights, X and the noise
    n_classes: int | None = None  # null: a regression target; else labels 0 .. n_classes - 1

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.n_samples > 0, "data.n_samples", self.n_samples, "an integer > 0")
        require(self.n_features > 0, "data.n_features", self.n_features, "an integer > 0")
        require(self.n_targets > 0, "data.n_targets", self.n_targets, "an integer > 0")
        require(self.noise >= 0, "data.noise", self.noise, "a standard deviation >= 0")
        require(self.data_seed >= 0, "data.data_seed", self.data_seed, "an integer >= 0")
        if self.n_classes is not None:
            require(self.n_classes >= 2, "data.n_classes", self.n_classes, "an integer >= 2")
            require(
                self.n_targets == 1,
                "data.n_targets",
                self.n_targets,
                "1 with data.n_classes (one label column)",
            )
        if self.weights is not None:
            size = self.n_features * (self.n_classes or self.n_targets)
            require(len(self.weights) == size, "data.weights", self.weights, f"{size} values")


@dataclass
class FileDataConfig(DataConfig):
    """A table in a file (CSV or Parquet): numeric feature columns and the target column(s),
    numbers for a regression loss, class labels (strings or integers) for a classification
    loss."""

    path: str = MISSING  # absolute, or relative to the folder the command runs in
    target: Any = MISSING  # one column name or a list of names (one column for labels)
    features: list[str] | None = None  # None: every column but the target(s)
    # The class names in index order, for a label column; None: the labels found, sorted
    # (integers numerically). Labels outside the list are refused.
    classes: list[str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.classes is not None:
            names = [str(name) for name in self.classes]
            require(
                len(names) >= 2 and len(set(names)) == len(names),
                "data.classes",
                self.classes,
                "at least two distinct class names (or null: the labels found, sorted)",
            )
            self.classes = names


@dataclass
class CsvDataConfig(FileDataConfig):
    """A CSV file with a header row (a UTF-8 BOM is fine; blank lines are skipped)."""

    _target_: str = "trainlab.data.sources.CsvSource"
    name: str = "csv"
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
class ParquetDataConfig(FileDataConfig):
    """A Parquet file (pyarrow, pandas, Spark, Polars ... write them); its column types say
    what is a number."""

    _target_: str = "trainlab.data.sources.ParquetSource"
    name: str = "parquet"


@dataclass
class DiabetesDataConfig(DataConfig):
    """scikit-learn's 442 x 10 diabetes data, shipped inside scikit-learn (no download)."""

    _target_: str = "trainlab.data.sources.DiabetesSource"
    name: str = "diabetes"
    standardize: bool = True
    val_split: float = 0.2


@dataclass
class IrisDataConfig(DataConfig):
    """scikit-learn's iris flowers: 150 x 4 measurements (cm), 3 species (setosa, versicolor,
    virginica), shipped inside scikit-learn."""

    _target_: str = "trainlab.data.sources.IrisSource"
    name: str = "iris"
    standardize: bool = True
    val_split: float = 0.2


@dataclass
class WineDataConfig(DataConfig):
    """scikit-learn's wines: 178 x 13 chemical measurements, 3 cultivars (class_0, class_1,
    class_2), shipped inside scikit-learn."""

    _target_: str = "trainlab.data.sources.WineSource"
    name: str = "wine"
    standardize: bool = True
    val_split: float = 0.2


@dataclass
class BreastCancerDataConfig(DataConfig):
    """scikit-learn's breast cancer (Wisconsin diagnostic) data: 569 x 30 features of cell
    nuclei, 2 classes (malignant, benign), shipped inside scikit-learn."""

    _target_: str = "trainlab.data.sources.BreastCancerSource"
    name: str = "breast_cancer"
    standardize: bool = True
    val_split: float = 0.2


DATAMODULE_SOURCE = "trainlab.data.custom.DataModuleSource"


@dataclass
class CustomDataConfig(DataConfig):
    """A LightningDataModule of yours: `data=custom data.target=mypkg.data.MyDataModule
    +data.kwargs.batch_size=64`, or `data._target_=mypkg.data.MyDataModule` as Hydra names a
    class (both spellings are recorded as `data.target`, so they are the same job). It makes its
    own loaders, splits and batches: the keys of the other data options do not apply to it."""

    MAKES_DATAMODULE: ClassVar[bool] = True
    NOT_APPLICABLE: ClassVar[tuple[str, ...]] = (
        "val_split", "test_split", "standardize", "batch_size", "shuffle", "x_test",
    )  # fmt: skip
    _target_: str = DATAMODULE_SOURCE
    name: str = "custom"
    target: str | None = None  # package.module.Class, importable from the Python path
    kwargs: dict[str, Any] = field(default_factory=dict)  # the constructor's arguments

    def __post_init__(self) -> None:
        super().__post_init__()
        if self._target_ != DATAMODULE_SOURCE:  # data._target_=mypkg.data.MyDataModule
            if self.target not in (None, self._target_):
                raise ConfigError(
                    f"data._target_={self._target_!r} and data.target={self.target!r} name two "
                    "classes; expected one of them (they are the same key)"
                )
            self.target, self._target_ = self._target_, DATAMODULE_SOURCE
        ok = self.target is not None and "." in self.target and not self.target.startswith(".")
        require(
            ok,
            "data.target",
            self.target,
            "a LightningDataModule class path like mypkg.data.MyDataModule (data=custom "
            "data.target=... or data._target_=...)",
        )
        for key, default in NOT_FOR_DATAMODULES.items():
            value = getattr(self, key)
            hint = " (+data.kwargs.batch_size=N if its constructor takes one)"
            require(
                value == default,
                f"data.{key}",
                value,
                f"data.{key}={as_yaml(default)} with data=custom: the datamodule makes its own loaders"
                + (hint if key == "batch_size" else ""),
            )


# What trainlab does to the rows of its own sources and a datamodule does itself.
NOT_FOR_DATAMODULES: dict[str, Any] = {
    "val_split": 0.0,
    "test_split": 0.0,
    "standardize": False,
    "batch_size": None,
    "shuffle": True,
}


def as_yaml(value: Any) -> str:
    """A default as one types it on the command line (true, null)."""
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


def not_applicable(data: Any) -> tuple[str, ...]:
    """The `data` keys that say nothing of a run on this data (recorded in its config file, not
    as params): trainlab's own row handling, for a datamodule that makes its own loaders."""
    return tuple(getattr(data, "NOT_APPLICABLE", ()))
