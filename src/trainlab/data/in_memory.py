"""A LightningDataModule over rows held in memory: the base of every built-in data option
(the tables of data/sources.py, the images of data/images.py).

The rows are made once, in `setup` (a subclass says how: `load`, or `make_splits` for a source
that splits and scales its own way), split by one seeded permutation (data/splits.py) and served
in batches sliced from tensors moved once to the Trainer's device (data/batches.py's
TensorBatches: no per-sample collation, a stateful shuffle that a resumed run repeats). Under
DDP each rank trains on its share of every batch, and validates and tests on every row (the
metrics are exact on any number of ranks). Without a Trainer the loaders serve CPU tensors, so
the module works under a plain `Trainer.fit` or a loop of one's own.

Validation and test loaders exist only where their split does: the hooks are bound on the
instance when `val_split`/`test_split` > 0, as `LightningDataModule.from_datasets` does. A class
that always defined `val_dataloader` would have to return something for a run without a
validation split, and Lightning treats an empty loader as a misconfiguration; a hook that is not
there is one Lightning skips (`lightning.pytorch.utilities.model_helpers.is_overridden`, which
sees instance hooks, says whether it is there).
"""

from __future__ import annotations

import lightning as L
import torch

from trainlab.data.batches import TensorBatches
from trainlab.data.splits import split_rows

Rows = tuple[torch.Tensor, torch.Tensor]


class InMemoryDataModule(L.LightningDataModule):
    """Rows in memory, split once by a seeded permutation, batched by slicing."""

    def __init__(
        self,
        val_split: float,
        test_split: float,
        batch_size: int | None,
        shuffle: bool,
        seed: int,
    ) -> None:
        super().__init__()
        self.val_split, self.test_split = val_split, test_split
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.splits: dict[str, Rows] = {}  # "train", "val", "test" rows, on the CPU
        self.on_device: dict[tuple[str, str], Rows] = {}
        # Only the splits that exist have loaders (the module docstring says why).
        if val_split > 0:
            self.val_dataloader = self.validation_batches  # type: ignore[method-assign]
        if test_split > 0:
            self.test_dataloader = self.test_batches  # type: ignore[method-assign]

    def load(self) -> Rows:
        """Every row: inputs and their targets, in the source's order."""
        raise NotImplementedError

    def make_splits(self) -> dict[str, Rows]:
        """The rows of each split that exists; without a split, every row in order."""
        inputs, targets = self.load()
        split = split_rows(len(inputs), self.val_split, self.test_split, self.seed)
        splits = {}
        for name, rows in (("train", split.train), ("val", split.val), ("test", split.test)):
            if rows is not None:
                splits[name] = (inputs[rows], targets[rows])
        splits.setdefault("train", (inputs, targets))
        return splits

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:  # made once, whatever the stages Lightning sets up
            self.splits = self.make_splits()

    def rows(self, split: str) -> Rows:
        """The split's inputs and targets on the Trainer's device (set up on first use)."""
        self.setup()
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        key = (split, str(device))
        if key not in self.on_device:
            x, y = self.splits[split]
            self.on_device[key] = (x.to(device), y.to(device))
        return self.on_device[key]

    def train_dataloader(self) -> TensorBatches:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        x, y = self.rows("train")
        return TensorBatches(x, y, self.batch_size, self.shuffle, self.seed, rank, world)

    def validation_batches(self) -> TensorBatches:
        """`val_dataloader`, where there is a validation split."""
        return TensorBatches(*self.rows("val"), self.batch_size, False, self.seed)

    def test_batches(self) -> TensorBatches:
        """`test_dataloader`, where there is a test split."""
        return TensorBatches(*self.rows("test"), self.batch_size, False, self.seed)
