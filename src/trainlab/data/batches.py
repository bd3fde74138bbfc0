"""Mini-batches sliced from in-memory tensors, and the LightningDataModule that serves them.

Why not DataLoader(TensorDataset(X, Y)): it collates sample by sample, which makes an epoch
many times slower than slicing the tensors in batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import lightning as L
import torch

from trainlab.data.dataset import Dataset


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
        self.epoch_start: torch.Tensor | None = None  # the generator before this epoch's order
        self.position: int | None = None  # batches trained this epoch, set before a checkpoint
        self.skip = 0  # batches of a resumed epoch already trained

    def __len__(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    # Lightning saves these in checkpoints (a "stateful" loader), so a resumed run shuffles
    # its next epochs exactly as an uninterrupted one would; a checkpoint taken inside an epoch
    # (`at_batch`) also holds where the epoch was, and the resumed epoch goes on from there with
    # the same order (Lightning then expects only the remaining batches).
    def state_dict(self) -> dict[str, torch.Tensor | int]:
        if not self.position:
            return {"generator": self.generator.get_state()}
        start = self.epoch_start if self.epoch_start is not None else self.generator.get_state()
        return {"generator": start, "position": self.position}

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        self.generator.set_state(state["generator"])
        self.skip = int(state.get("position", 0))

    def at_batch(self, position: int | None) -> None:
        """Where the epoch is for the next state_dict: batches trained, None at its end."""
        self.position = position

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.position = None
        order = None
        if self.shuffle:
            self.epoch_start = self.generator.get_state()
            order = torch.randperm(len(self.x), generator=self.generator).to(self.x.device)
        skip, self.skip = self.skip, 0
        for start in range(skip * self.batch_size, self.rows, self.batch_size):
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
    the device; the whole data set moves to the device once, batches are slices of it. A fit in
    one process knows its device before it starts: the engine then hands the Trainer the
    loaders themselves (`train_batches`, `val_batches`), see engines/lightning.py.
    """

    def __init__(
        self,
        data: Dataset,
        batch_size: int | None,
        shuffle: bool,
        seed: int,
        loader_state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.data, self.batch_size, self.shuffle, self.seed = data, batch_size, shuffle, seed
        self.loader_state = loader_state  # a resumed run's shuffle state, from its checkpoint

    def train_dataloader(self) -> TensorBatches:
        trainer = self.trainer
        return self.train_batches(
            trainer.strategy.root_device, trainer.global_rank, trainer.world_size
        )

    def train_batches(
        self, device: torch.device, rank: int = 0, world_size: int = 1
    ) -> TensorBatches:
        """The training batches of process `rank` of `world_size`, on `device`."""
        batches = TensorBatches(
            self.data.x_train.to(device),
            self.data.y_train.to(device),
            self.batch_size,
            self.shuffle,
            self.seed,
            rank=rank,
            world_size=world_size,
        )
        if self.loader_state is not None:
            batches.load_state_dict(self.loader_state)
        return batches


class ValidatedDataModule(TensorDataModule):
    """The same with a validation split (the module is then a ValidatedRegressionModule). A
    module and data without validation define no validation hooks at all: Lightning then runs no
    validation machinery, prints nothing about it, and skips its per-step check."""

    def val_dataloader(self) -> TensorBatches:
        return self.val_batches(self.trainer.strategy.root_device)

    def val_batches(self, device: torch.device) -> TensorBatches:
        x_val, y_val = self.data.x_val, self.data.y_val
        assert x_val is not None and y_val is not None, "a validation split"
        # Every rank scores the whole validation set: val/loss is exact on any number of ranks.
        return TensorBatches(x_val.to(device), y_val.to(device), None, False, self.seed)


def lightning_data(
    data: Dataset,
    batch_size: int | None,
    shuffle: bool,
    seed: int,
    loader_state: dict[str, torch.Tensor] | None = None,
) -> TensorDataModule:
    """The Trainer's data, with validation hooks only when there are validation rows."""
    kind = ValidatedDataModule if data.x_val is not None else TensorDataModule
    return kind(data, batch_size, shuffle, seed, loader_state)
