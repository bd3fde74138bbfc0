"""The built-in data sources (seed, synthetic, csv, parquet, diabetes, iris, wine, breast_cancer)
as LightningDataModules, and `load_dataset`, which builds whichever datamodule `data._target_`
names and sets it up before the run opens.

Each source is a schema (config/data.py: its fields, checked, and its `_target_`) and a class
here: a TableDataModule (data/table_module.py) whose `arrays()` gives every raw row; checking,
splitting, standardizing and batching are the base class's, the same for every source. The
images (data/images.py) and a user's datamodule (`data=custom`, data/custom.py) take the same
path: the class `_target_` names, built with the schema's fields and the run's seed.

Everything is checked here, before an MLflow run exists, so bad data stops the job with one line
and no half-made run (what needs no rows, a file and its header, is checked earlier, in
data/file_checks.py). Files are read by pyarrow (data/tables.py); scikit-learn's sets ship inside it.
The class names are the `_target_`s that runs recorded, so every recorded run still loads.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import lightning as L
import numpy as np
from hydra.utils import get_class

from trainlab.config.construct import construct
from trainlab.config.data import CsvDataConfig, CustomDataConfig, DataConfig, ParquetDataConfig
from trainlab.data.arrays import RawData
from trainlab.data.custom import DataModuleSource, from_datamodule
from trainlab.data.dataset import Dataset
from trainlab.data.file_checks import check_source
from trainlab.data.lineage import Origin
from trainlab.data.table_module import TableDataModule
from trainlab.paths import resolve_user_path

# The constructors take their schema's fields; the schema (config/data.py) holds the defaults.


class SeedSource(TableDataModule):
    """Note 20 of the seed: one feature `x`, one target `y`."""

    def __init__(self, *, x: list[float], y: list[float], **table: Any) -> None:
        super().__init__(**table)
        self.x, self.y = list(x), list(y)

    def arrays(self) -> RawData:
        x = np.asarray(self.x, dtype=np.float64).reshape(-1, 1)
        y = np.asarray(self.y, dtype=np.float64).reshape(-1, 1)
        return RawData(x=x, y=y, feature_names=["x"], target_names=["y"])


class SyntheticSource(TableDataModule):
    """Y = X W^T + b + noise (config/data.py's SyntheticDataConfig says the rest)."""

    def __init__(
        self,
        *,
        n_samples: int,
        n_features: int,
        n_targets: int,
        noise: float,
        weights: list[float] | None,
        bias: float,
        data_seed: int,
        n_classes: int | None,
        **table: Any,
    ) -> None:
        super().__init__(**table)
        self.n_samples, self.n_features, self.n_targets = n_samples, n_features, n_targets
        self.noise, self.weights, self.bias = noise, weights, bias
        self.data_seed, self.n_classes = data_seed, n_classes

    def arrays(self) -> RawData:
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


class FileSource(TableDataModule):
    """A table in a file; `schema` is its config class, which the readers take."""

    schema: type[CsvDataConfig] | type[ParquetDataConfig]

    def __init__(
        self,
        *,
        path: str,
        target: Any,
        features: list[str] | None = None,
        classes: list[str] | None = None,
        **table: Any,
    ) -> None:
        file_keys = {k: table.pop(k) for k in ("delimiter",) if k in table}
        super().__init__(**table)
        self.file = self.schema(
            path=path, target=target, features=features, classes=classes, **file_keys
        )

    def arrays(self) -> RawData:
        return read_file(self.file, self.task)

    def origin(self) -> Origin:
        path = resolve_user_path(self.file.path)
        return Origin(name=path.name, source=str(path), source_type="local")


class CsvSource(FileSource):
    schema = CsvDataConfig


class ParquetSource(FileSource):
    schema = ParquetDataConfig


def read_file(cfg: CsvDataConfig | ParquetDataConfig, task: str) -> RawData:
    # Imported only by runs that read a file: pyarrow would slow every other run's start.
    from trainlab.data.tables import read_table

    return read_table(cfg, task)


class DiabetesSource(TableDataModule):
    """scikit-learn's 442 x 10 diabetes data; the target is the disease's progression."""

    def arrays(self) -> RawData:
        bunch = scikit_learn_set("load_diabetes")
        y = bunch.target.reshape(-1, 1)
        features = list(bunch.feature_names)
        return RawData(x=bunch.data, y=y, feature_names=features, target_names=["progression"])


class IrisSource(TableDataModule):
    """scikit-learn's iris flowers: 4 measurements, 3 species."""

    def arrays(self) -> RawData:
        return labelled_set("load_iris", "species")


class WineSource(TableDataModule):
    """scikit-learn's wines: 13 chemical measurements, 3 cultivars."""

    def arrays(self) -> RawData:
        return labelled_set("load_wine", "cultivar")


class BreastCancerSource(TableDataModule):
    """scikit-learn's breast cancer (Wisconsin diagnostic) data: 30 features, 2 classes."""

    def arrays(self) -> RawData:
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
    # Only these runs pay for importing scikit-learn (a slow import); its data ships inside it.
    import sklearn.datasets

    return getattr(sklearn.datasets, loader)()


def build(cfg: DataConfig, seed: int, task: str) -> L.LightningDataModule:
    """The datamodule `data._target_` names, built with the schema's fields (those that apply),
    the run's seed and, where its constructor takes one, the task."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in cfg.NOT_APPLICABLE}
    cls = get_class(cfg._target_)
    extra: dict[str, Any] = {"seed": seed}
    if issubclass(cls, TableDataModule) or "task" in inspect.signature(cls).parameters:
        extra["task"] = task
    return construct(fields, **extra)


def load_dataset(cfg: DataConfig, seed: int, task: str = "regression") -> Dataset:
    """Build and set up the configured datamodule; a table's rows are split (seeded) and
    standardized; `task` is "regression" (float targets) or "classification" (int64 class
    indices and their names)."""
    if isinstance(cfg, CustomDataConfig):  # the user's class, with its own constructor keys
        assert cfg.target is not None  # the schema requires it
        return DataModuleSource(cfg.target, cfg.kwargs, cfg.name).dataset(seed, task)
    check_source(cfg, task)
    module = build(cfg, seed, task)
    module.prepare_data()
    module.setup("fit")
    if isinstance(module, TableDataModule):
        return module.dataset
    path = getattr(cfg, "path", None)
    return from_datamodule(module, cfg._target_, task, name=cfg.name, source=path)
