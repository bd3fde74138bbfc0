"""Data sources (seed, synthetic, csv, diabetes) loaded, checked, split and standardized.

A source is the class `data._target_` names: it extends its schema (config/data.py) with
`arrays()`, the raw feature and target rows and their names; `load_dataset` checks, splits and
standardizes them the same way for every source.

Everything is checked here, before an MLflow run exists, so bad data stops the job with one line
and no half-made run (what needs no rows, a CSV's file and header, is checked earlier, in
data/checks.py). CSV files are read with the standard library's csv module, not pandas: a training job never pays
for importing pandas (0.5 s here).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass

import numpy as np
import torch
from hydra.utils import instantiate

from trainlab.config.data import (
    CsvDataConfig,
    DataConfig,
    DiabetesDataConfig,
    SeedDataConfig,
    SyntheticDataConfig,
)
from trainlab.data.checks import csv_columns
from trainlab.data.dataset import Dataset
from trainlab.data.lineage import describe
from trainlab.errors import ConfigError

Arrays = tuple[np.ndarray, np.ndarray, list[str], list[str]]


@dataclass
class SeedSource(SeedDataConfig):
    def arrays(self) -> Arrays:
        return _seed_arrays(self)


@dataclass
class SyntheticSource(SyntheticDataConfig):
    def arrays(self) -> Arrays:
        return _synthetic_arrays(self)


@dataclass
class CsvSource(CsvDataConfig):
    def arrays(self) -> Arrays:
        return _csv_arrays(self)


@dataclass
class DiabetesSource(DiabetesDataConfig):
    def arrays(self) -> Arrays:
        return _diabetes_arrays(self)


def _seed_arrays(cfg: SeedDataConfig) -> Arrays:
    x = np.asarray(cfg.x, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(cfg.y, dtype=np.float64).reshape(-1, 1)
    return x, y, ["x"], ["y"]


def _synthetic_arrays(cfg: SyntheticDataConfig) -> Arrays:
    rng = np.random.default_rng(cfg.data_seed)
    if cfg.weights is None:
        weights = rng.normal(size=(cfg.n_targets, cfg.n_features))
    else:
        weights = np.asarray(cfg.weights, dtype=np.float64).reshape(cfg.n_targets, cfg.n_features)
    x = rng.normal(size=(cfg.n_samples, cfg.n_features))
    y = x @ weights.T + cfg.bias + cfg.noise * rng.normal(size=(cfg.n_samples, cfg.n_targets))
    features = [f"x{i}" for i in range(cfg.n_features)]
    return x, y, features, [f"y{j}" for j in range(cfg.n_targets)]


def _csv_arrays(cfg: CsvDataConfig) -> Arrays:
    path, columns, features, targets = csv_columns(cfg)
    try:
        with path.open(newline="") as file:
            rows = [row for row in csv.reader(file, delimiter=cfg.delimiter)][1:]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"data.path={cfg.path!r}: not a readable CSV ({err})") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise ConfigError(f"data.path={cfg.path!r}: the CSV has a header but no rows")
    arrays = []
    for group in (features, targets):
        index = [columns.index(name) for name in group]
        values = np.empty((len(rows), len(group)))
        for r, row in enumerate(rows):
            for c, i in enumerate(index):
                values[r, c] = _number(row[i] if i < len(row) else "", cfg.path, group[c])
        arrays.append(values)
    return arrays[0], arrays[1], features, targets


def _number(cell: str, path: str, column: str) -> float:
    text = cell.strip()
    if not text:
        return math.nan  # a missing value: reported as NaN with its row below
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            f"data.path={path!r}: column {column!r} has non-numeric values; expected numbers"
        ) from None


def _diabetes_arrays(cfg: DiabetesDataConfig) -> Arrays:
    # Only diabetes runs pay for importing scikit-learn (1.5 s); its data ships inside it.
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    return bunch.data, bunch.target.reshape(-1, 1), list(bunch.feature_names), ["progression"]


def source(cfg: DataConfig) -> DataConfig:
    """The source class `data._target_` names, built from the checked config."""
    return cfg if hasattr(cfg, "arrays") else instantiate(cfg, _convert_="all")


def load_dataset(cfg: DataConfig, seed: int, task: str = "regression") -> Dataset:
    """Load, check, split (seeded) and standardize the configured data."""
    x, y, feature_names, target_names = source(cfg).arrays()
    for name, values in (("features", x), ("targets", y)):
        if not np.isfinite(values).all():
            row = int(np.argwhere(~np.isfinite(values))[0][0])
            raise ConfigError(
                f"data: {name} contain NaN or inf (first at row {row}); expected finite numbers"
            )
    classes: tuple[str, ...] = ()
    if task == "classification":  # interim: numeric labels only (the data branch reads strings)
        values, y = np.unique(y[:, 0], return_inverse=True)
        classes = tuple(f"{v:g}" for v in values)
    x_train, y_train = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y))
    x_val = y_val = None
    if cfg.val_split > 0:
        n_val = math.floor(len(x) * cfg.val_split)
        if n_val < 1 or n_val >= len(x):
            raise ConfigError(
                f"data.val_split={cfg.val_split} leaves {len(x) - n_val} training and {n_val} "
                f"validation rows of {len(x)}; expected at least one of each"
            )
        # torch's permutation, as every recorded run was split: a rerun gets the same rows.
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        val_idx, train_idx = order[:n_val], order[n_val:]
        x_train, y_train, x_val, y_val = (
            x_train[train_idx],
            y_train[train_idx],
            x_train[val_idx],
            y_train[val_idx],
        )
    if cfg.batch_size is not None and cfg.batch_size > len(x_train):
        raise ConfigError(
            f"data.batch_size={cfg.batch_size} is larger than the {len(x_train)} training rows; "
            "expected at most that many (or null for the full batch)"
        )
    splits = {"training": (x_train.numpy(), y_train.numpy())}
    if x_val is not None and y_val is not None:
        splits["validation"] = (x_val.numpy(), y_val.numpy())
    lineage = describe(cfg, splits, feature_names, target_names)
    data = Dataset(
        x_train,
        y_train,
        x_val,
        y_val,
        feature_names,
        target_names,
        lineage=lineage,
        classes=classes,
    )
    return data.standardized() if cfg.standardize else data
