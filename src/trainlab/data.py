"""Data sources (seed, synthetic, csv, diabetes) and an in-memory batcher for tensors.

Everything is loaded, checked and split here, before an MLflow run exists, so bad data stops
the job with one line and no half-made run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch

from trainlab.paths import resolve_user_path
from trainlab.schema import (
    ConfigError,
    CsvDataConfig,
    DataConfig,
    DiabetesDataConfig,
    SeedDataConfig,
    SyntheticDataConfig,
)


@dataclass
class Dataset:
    """Training (and validation) tensors, float64 on the CPU; engines cast and move them."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    feature_names: list[str] = field(default_factory=list)
    target_names: list[str] = field(default_factory=list)
    # Standardization fitted on the training rows; identity when it is off.
    x_mean: torch.Tensor | None = None
    x_std: torch.Tensor | None = None

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_targets(self) -> int:
        return self.y_train.shape[1]

    def cast(self, dtype: torch.dtype) -> Dataset:
        """The same data in `dtype` (float32 for 32/mixed precision, float64 for 64)."""

        def to(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(dtype)

        return Dataset(
            to(self.x_train),
            to(self.y_train),
            to(self.x_val),
            to(self.y_val),
            self.feature_names,
            self.target_names,
            to(self.x_mean),
            to(self.x_std),
        )

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs to the inputs the model was trained on."""
        if self.x_mean is None or self.x_std is None:
            return x
        return (x - self.x_mean) / self.x_std


def _seed_arrays(cfg: SeedDataConfig) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    x = np.asarray(cfg.x, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(cfg.y, dtype=np.float64).reshape(-1, 1)
    return x, y, ["x"], ["y"]


def _synthetic_arrays(cfg: SyntheticDataConfig) -> tuple[np.ndarray, np.ndarray, list, list]:
    rng = np.random.default_rng(cfg.data_seed)
    if cfg.weights is None:
        weights = rng.normal(size=(cfg.n_targets, cfg.n_features))
    else:
        weights = np.asarray(cfg.weights, dtype=np.float64).reshape(cfg.n_targets, cfg.n_features)
    x = rng.normal(size=(cfg.n_samples, cfg.n_features))
    y = x @ weights.T + cfg.bias + cfg.noise * rng.normal(size=(cfg.n_samples, cfg.n_targets))
    features = [f"x{i}" for i in range(cfg.n_features)]
    return x, y, features, [f"y{j}" for j in range(cfg.n_targets)]


def _csv_arrays(cfg: CsvDataConfig) -> tuple[np.ndarray, np.ndarray, list, list]:
    import pandas as pd  # only CSV runs pay for the pandas import

    path = resolve_user_path(cfg.path)
    if not path.is_file():
        raise ConfigError(f"data.path={cfg.path!r}: no such file ({path})")
    try:
        frame = pd.read_csv(path, sep=cfg.delimiter)
    except pd.errors.EmptyDataError:
        raise ConfigError(f"data.path={cfg.path!r}: the CSV file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ConfigError(f"data.path={cfg.path!r}: not a readable CSV ({err})") from None
    if frame.empty:
        raise ConfigError(f"data.path={cfg.path!r}: the CSV has a header but no rows")
    columns = [str(c) for c in frame.columns]
    targets = [cfg.target] if isinstance(cfg.target, str) else [str(t) for t in cfg.target]
    for name in targets:
        if name not in columns:
            raise ConfigError(
                f"data.target={name!r} is not a column of {path.name}; columns: {columns}"
            )
    features = (
        cfg.features if cfg.features is not None else [c for c in columns if c not in targets]
    )
    for name in features:
        if name not in columns:
            raise ConfigError(
                f"data.features: {name!r} is not a column of {path.name}; columns: {columns}"
            )
    if not features:
        raise ConfigError(f"data.features: {path.name} has no column left besides the target(s)")
    arrays = []
    for group in (features, targets):
        try:
            arrays.append(frame[group].to_numpy(dtype=np.float64))
        except ValueError:
            bad = next(c for c in group if not pd.api.types.is_numeric_dtype(frame[c]))
            raise ConfigError(
                f"data.path={cfg.path!r}: column {bad!r} has non-numeric values; expected numbers"
            ) from None
    return arrays[0], arrays[1], list(features), targets


def _diabetes_arrays(cfg: DiabetesDataConfig) -> tuple[np.ndarray, np.ndarray, list, list]:
    from sklearn.datasets import load_diabetes  # ships with scikit-learn, no download

    bunch = load_diabetes()
    return bunch.data, bunch.target.reshape(-1, 1), list(bunch.feature_names), ["progression"]


_LOADERS = {
    SeedDataConfig: _seed_arrays,
    SyntheticDataConfig: _synthetic_arrays,
    CsvDataConfig: _csv_arrays,
    DiabetesDataConfig: _diabetes_arrays,
}


def load_dataset(cfg: DataConfig, seed: int) -> Dataset:
    """Load, check, split (seeded) and standardize the configured data."""
    x, y, feature_names, target_names = _LOADERS[type(cfg)](cfg)
    for name, values in (("features", x), ("targets", y)):
        if not np.isfinite(values).all():
            row = int(np.argwhere(~np.isfinite(values))[0][0])
            raise ConfigError(
                f"data: {name} contain NaN or inf (first at row {row}); expected finite numbers"
            )
    # A copy only where pandas hands out a read-only array (torch warns about those).
    x_train, y_train = (torch.from_numpy(np.require(a, requirements="W")) for a in (x, y))
    x_val = y_val = None
    if cfg.val_split > 0:
        n_val = math.floor(len(x) * cfg.val_split)
        if n_val < 1 or n_val >= len(x):
            raise ConfigError(
                f"data.val_split={cfg.val_split} leaves {len(x) - n_val} training and {n_val} "
                f"validation rows of {len(x)}; expected at least one of each"
            )
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
    data = Dataset(x_train, y_train, x_val, y_val, feature_names, target_names)
    if cfg.standardize:
        std = x_train.std(dim=0, unbiased=False)
        data.x_mean, data.x_std = (
            x_train.mean(dim=0),
            torch.where(std > 0, std, torch.ones_like(std)),
        )
        data.x_train = data.scale(x_train)
        if x_val is not None:
            data.x_val = data.scale(x_val)
    return data


def parse_x_test(x_test: Any, n_features: int) -> torch.Tensor | None:
    """`x_test` as an (n, n_features) float64 tensor: one row [..] or several [[..], [..]]."""
    if x_test is None:
        return None
    try:
        rows = torch.as_tensor(x_test, dtype=torch.float64)
    except (TypeError, ValueError):
        raise ConfigError(
            f"x_test={x_test!r}: expected a list of numbers or a list of rows"
        ) from None
    if rows.dim() == 0:
        rows = rows.reshape(1, 1)
    elif rows.dim() == 1:
        rows = rows.reshape(1, -1)
    if rows.dim() != 2 or rows.shape[1] != n_features:
        raise ConfigError(
            f"x_test={x_test!r} has {rows.shape[-1]} values per row; the data has {n_features} features"
        )
    return rows


class TensorBatches:
    """Mini-batches sliced from in-memory tensors: no per-sample collation.

    A fresh permutation each epoch (from its own seeded generator, so runs repeat), every row
    exactly once per epoch; the last batch may be short. `batch_size` is the global batch, what
    one optimizer step sees: with `world_size` DDP processes, rank r takes the r-th of
    `world_size` equal, disjoint shares of every batch (every rank draws the same permutation),
    and the `len(x) % world_size` rows left over sit that epoch out (other rows each epoch when
    shuffled), as DistributedSampler(drop_last=True) does.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int | None,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.x, self.y = x, y
        self.rank, self.world_size = rank, world_size
        self.rows = len(x) - len(x) % world_size  # rows used per epoch
        self.batch_size = batch_size or self.rows
        if self.rows == 0 or self.batch_size % world_size:
            raise ValueError(
                f"{len(x)} rows in batches of {self.batch_size} cannot be shared by {world_size}"
            )
        self.shuffle = shuffle and self.batch_size < len(x)  # a full batch has no order
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    # Lightning saves these in checkpoints (a "stateful" loader), so a resumed run shuffles
    # its next epochs exactly as an uninterrupted one would.
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = None
        if self.shuffle:
            order = torch.randperm(len(self.x), generator=self.generator).to(self.x.device)
        for start in range(0, self.rows, self.batch_size):
            share = (min(start + self.batch_size, self.rows) - start) // self.world_size
            first = start + self.rank * share
            if order is None:
                yield self.x[first : first + share], self.y[first : first + share]
            else:
                index = order[first : first + share]
                yield self.x[index], self.y[index]


class TensorDataModule(L.LightningDataModule):
    """The data for the Trainer, set up in each DDP process: its rank's share, on its device.

    Lightning calls the *_dataloader hooks in every process once the strategy knows the rank and
    the device; the whole data set moves to the device once, batches are slices of it.
    """

    def __init__(
        self,
        data: Dataset,
        batch_size: int | None,
        shuffle: bool,
        seed: int,
        restore: Callable[[TensorBatches], None] | None = None,
    ) -> None:
        super().__init__()
        self.data, self.batch_size, self.shuffle, self.seed = data, batch_size, shuffle, seed
        self.restore = restore  # a resumed run puts back the shuffle state of its checkpoint

    def train_dataloader(self) -> TensorBatches:
        device = self.trainer.strategy.root_device
        batches = TensorBatches(
            self.data.x_train.to(device),
            self.data.y_train.to(device),
            self.batch_size,
            self.shuffle,
            self.seed,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
        )
        if self.restore is not None:
            self.restore(batches)
        return batches

    def val_dataloader(self) -> TensorBatches | list:
        if self.data.x_val is None or self.data.y_val is None:
            return []  # no validation loop
        # Every rank scores the whole validation set: val/loss is exact on any number of ranks.
        device = self.trainer.strategy.root_device
        return TensorBatches(
            self.data.x_val.to(device), self.data.y_val.to(device), None, False, self.seed
        )
