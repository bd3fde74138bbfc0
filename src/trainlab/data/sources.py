"""Data sources (seed, synthetic, csv, parquet, diabetes, iris, wine, breast_cancer) loaded,
checked, split and standardized.

A source is the class `data._target_` names: it extends its schema (config/data.py) with
`arrays(task)`, every raw row (data/arrays.py's RawData: features, and numbers or class labels as
the task asks); `load_dataset` checks, splits and standardizes them the same way for every source.

Everything is checked here, before an MLflow run exists, so bad data stops the job with one line
and no half-made run (what needs no rows, a file and its header, is checked earlier, in
data/checks.py). Files are read by pyarrow (data/tables.py); scikit-learn's sets ship inside it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate

from trainlab.config.data import (
    BreastCancerDataConfig,
    CsvDataConfig,
    CustomDataConfig,
    DataConfig,
    DiabetesDataConfig,
    IrisDataConfig,
    ParquetDataConfig,
    SeedDataConfig,
    SyntheticDataConfig,
    WineDataConfig,
)
from trainlab.data.arrays import RawData, checked
from trainlab.data.checks import check_source
from trainlab.data.custom import DataModuleSource, from_datamodule
from trainlab.data.dataset import Dataset
from trainlab.data.lineage import describe
from trainlab.data.splits import split_rows
from trainlab.errors import ConfigError


@dataclass
class SeedSource(SeedDataConfig):
    def arrays(self, task: str) -> RawData:
        x = np.asarray(self.x, dtype=np.float64).reshape(-1, 1)
        y = np.asarray(self.y, dtype=np.float64).reshape(-1, 1)
        return RawData(x=x, y=y, feature_names=["x"], target_names=["y"])


@dataclass
class SyntheticSource(SyntheticDataConfig):
    def arrays(self, task: str) -> RawData:
        # The draws in the same order for both tasks: a regression set is what it always was.
        rng = np.random.default_rng(self.data_seed)
        outputs = self.n_classes or self.n_targets
        if self.weights is None:
            weights = rng.normal(size=(outputs, self.n_features))
        else:
            weights = np.asarray(self.weights, dtype=np.float64).reshape(outputs, self.n_features)
        x = rng.normal(size=(self.n_samples, self.n_features))
        noise = self.noise * rng.normal(size=(self.n_samples, outputs))
        y = x @ weights.T + self.bias + noise
        features = [f"x{i}" for i in range(self.n_features)]
        if self.n_classes is None:
            targets = [f"y{j}" for j in range(self.n_targets)]
            return RawData(x=x, y=y, feature_names=features, target_names=targets)
        classes = tuple(str(k) for k in range(self.n_classes))
        labels = y.argmax(axis=1).astype(np.int64)  # the class with the largest noisy score
        return RawData(x=x, y=labels, feature_names=features, target_names=["y"], classes=classes)


@dataclass
class CsvSource(CsvDataConfig):
    def arrays(self, task: str) -> RawData:
        return read_file(self, task)


@dataclass
class ParquetSource(ParquetDataConfig):
    def arrays(self, task: str) -> RawData:
        return read_file(self, task)


def read_file(cfg: CsvDataConfig | ParquetDataConfig, task: str) -> RawData:
    # Imported only by runs that read a file: pyarrow costs 0.15 s of every other run's start.
    from trainlab.data.tables import read_table

    return read_table(cfg, task)


@dataclass
class DiabetesSource(DiabetesDataConfig):
    def arrays(self, task: str) -> RawData:
        bunch = scikit_learn_set("load_diabetes")
        y = bunch.target.reshape(-1, 1)
        features = list(bunch.feature_names)
        return RawData(x=bunch.data, y=y, feature_names=features, target_names=["progression"])


@dataclass
class IrisSource(IrisDataConfig):
    def arrays(self, task: str) -> RawData:
        return labelled_set("load_iris", "species")


@dataclass
class WineSource(WineDataConfig):
    def arrays(self, task: str) -> RawData:
        return labelled_set("load_wine", "cultivar")


@dataclass
class BreastCancerSource(BreastCancerDataConfig):
    def arrays(self, task: str) -> RawData:
        return labelled_set("load_breast_cancer", "diagnosis")


def labelled_set(loader: str, target: str) -> RawData:
    """A scikit-learn set with its class names in its own order (target k is target_names[k])."""
    bunch = scikit_learn_set(loader)
    return RawData(
        x=np.asarray(bunch.data, dtype=np.float64),
        y=np.asarray(bunch.target, dtype=np.int64),
        feature_names=[str(name) for name in bunch.feature_names],
        target_names=[target],
        classes=tuple(str(name) for name in bunch.target_names),
    )


def scikit_learn_set(loader: str) -> Any:
    """scikit-learn's Bunch of a shipped data set (data, target, feature_names ...)."""
    # Only these runs pay for importing scikit-learn (1.5 s); its data ships inside it.
    import sklearn.datasets

    return getattr(sklearn.datasets, loader)()


def source(cfg: DataConfig) -> DataConfig:
    """The source class `data._target_` names, built from the checked config."""
    return cfg if hasattr(cfg, "arrays") else instantiate(cfg, _convert_="all")


def built_datamodule(cfg: DataConfig, seed: int, task: str) -> Dataset:
    """A LightningDataModule that `data._target_` names (data=images, data=digits), built with
    the schema's fields and the run's seed, set up before the run opens (its bad input is one
    line, and no run)."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in cfg.NOT_APPLICABLE}
    module = instantiate(fields, seed=seed, _convert_="all")
    module.prepare_data()
    module.setup("fit")
    path = getattr(cfg, "path", None)
    return from_datamodule(module, cfg._target_, task, name=cfg.name, source=path)


def load_dataset(cfg: DataConfig, seed: int, task: str = "regression") -> Dataset:
    """Load, check, split (seeded) and standardize the configured data; `task` is
    "regression" (float targets) or "classification" (int64 class indices and their names)."""
    if cfg.MAKES_DATAMODULE and not isinstance(cfg, CustomDataConfig):
        return built_datamodule(cfg, seed, task)
    made = source(cfg)
    if isinstance(made, DataModuleSource):  # its own loaders and splits
        return made.dataset(seed, task)
    check_source(cfg, task)
    raw = checked(made.arrays(task))
    x = torch.from_numpy(np.require(raw.x, np.float64, ("C", "W")))
    y = torch.from_numpy(np.require(raw.y, np.int64 if raw.classes else np.float64, ("C", "W")))
    split = split_rows(len(x), cfg.val_split, cfg.test_split, seed)

    def rows(index: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return (None, None) if index is None else (x[index], y[index])

    x_train, y_train = (x, y) if split.train is None else rows(split.train)
    (x_val, y_val), (x_test, y_test) = rows(split.val), rows(split.test)
    assert x_train is not None and y_train is not None
    if cfg.batch_size is not None and cfg.batch_size > len(x_train):
        raise ConfigError(
            f"data.batch_size={cfg.batch_size} is larger than the {len(x_train)} training rows; "
            "expected at most that many (or null for the full batch)"
        )
    named = {"training": (x_train, y_train), "validation": (x_val, y_val), "test": (x_test, y_test)}
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
        lineage=describe(cfg, splits, raw.feature_names, raw.target_names, raw.classes),
    )
    return data.standardized() if cfg.standardize else data
