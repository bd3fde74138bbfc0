"""LightningDataModules of a user's, as `data=custom data.target=tests.user_data.<Class>` names
them (importable from the checkout's root, where the tests run)."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset


class EpochShuffle(Sampler[int]):
    """A new order each epoch from (seed, epoch): Lightning calls set_epoch before each one, so
    a resumed fit shuffles its epochs as the uninterrupted one did."""

    def __init__(self, rows: int, seed: int = 7) -> None:
        self.rows, self.seed, self.epoch = rows, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.rows, generator=generator).tolist())

    def __len__(self) -> int:
        return self.rows


class Regression(L.LightningDataModule):
    """y = x W^T + 0.5 + noise: 3 features, 2 targets; train, val and test loaders."""

    def __init__(self, rows: int = 96, batch_size: int = 16, features: int = 3) -> None:
        super().__init__()
        self.rows, self.batch_size, self.n_features = rows, batch_size, features
        self.feature_names = [f"f{i}" for i in range(features)]

    def setup(self, stage: str) -> None:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(self.rows, self.n_features, generator=generator)
        w = torch.randn(2, self.n_features, generator=generator)
        y = x @ w.T + 0.5 + 0.1 * torch.randn(self.rows, 2, generator=generator)
        cut, end = self.rows * 2 // 3, self.rows * 5 // 6
        self.train_set = TensorDataset(x[:cut], y[:cut])
        self.val_set = TensorDataset(x[cut:end], y[cut:end])
        self.test_set = TensorDataset(x[end:], y[end:])

    def train_dataloader(self) -> DataLoader:
        sampler = EpochShuffle(len(self.train_set))
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.batch_size)


class Flowers(L.LightningDataModule):
    """Three labelled blobs in 2-D, named by `classes`; a random split in setup() (global RNG,
    seeded by trainlab) and shuffled batches; no val_dataloader."""

    classes = ("red", "green", "blue")

    def __init__(self, batch_size: int = 20) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage: str) -> None:
        if hasattr(self, "train_set"):  # split once (Lightning calls setup again): the usual guard
            return
        generator = torch.Generator().manual_seed(1)
        labels = torch.arange(90) % 3
        centres = torch.tensor([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
        x = centres[labels] + 0.8 * torch.randn(90, 2, generator=generator)
        order = torch.randperm(90)
        self.train_set = TensorDataset(x[order[:60]], labels[order[:60]])
        self.test_set = TensorDataset(x[order[60:]], labels[order[60:]])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=7)


class Dictionaries(Regression):
    """Batches as dicts, which trainlab's module cannot take apart."""

    def train_dataloader(self) -> DataLoader:
        rows = [{"x": x, "y": y} for x, y in self.train_set]
        return DataLoader(rows, batch_size=self.batch_size)


class NotADataModule:
    def __init__(self, batch_size: int = 8) -> None:
        self.batch_size = batch_size
