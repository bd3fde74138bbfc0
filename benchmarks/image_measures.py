"""Bench row M2: `model=cnn` on `data=digits`, one epoch (issue 25, item 7).

- M2: trainlab's Lightning engine, untracked (its callbacks included), against a barebones
  Trainer fitting the same module over the same datamodule: what trainlab's machinery costs
  around a convolutional network (target 1.05).
- M2-tracked: the whole in-process run tracked (metrics only) against untracked (target 1.10).

Both sides of a row are timed in turns (A, B, A, B ...), so that a neighbour's load on this
shared machine falls on both; a first untimed round warms what a first fit pays once.
`barebones_floor` is the floor without trainlab at all (the CNN in a minimal module, the same
datamodule): what the row would be measured against if trainlab's module were the cost.
"""

from __future__ import annotations

import logging
import statistics
import time

import lightning as L
import torch
from torch import nn

from benchmarks.measures import LEAN, Trainlab
from benchmarks.turns import Result, compared, take_turns
from trainlab.data.batches import TensorBatches
from trainlab.data.images import DigitsDataModule
from trainlab.models.cnn import CNN

DIGITS_CNN = (
    "data=digits",
    "model=cnn",
    "loss=cross_entropy",
    "optimizer=adam",
    "data.batch_size=64",
    "max_epochs=1",
)


def datamodule_floor_fit(lab: Trainlab, overrides: tuple[str, ...]) -> float:
    """Seconds of a barebones Trainer fitting the run's own module over the run's own loader
    (the datamodule the run trains on; rows in memory for a table)."""
    context = lab.fit_context(*overrides)
    settings, data = context.settings, context.data
    datamodule = getattr(data, "datamodule", None)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # barebones lists its limits
    start = time.perf_counter()  # from building the Trainer, as the engine is timed
    trainer = L.Trainer(max_epochs=settings.max_epochs, barebones=True, accelerator="cpu")
    if datamodule is not None:
        trainer.fit(context.module, datamodule=datamodule)
    else:
        batches = TensorBatches(data.x_train, data.y_train, settings.data.batch_size, True, 0)
        trainer.fit(context.module, batches)
    return time.perf_counter() - start


def m2_cnn(lab: Trainlab, repeats: int) -> list[Result]:
    fits = {
        "floor": lambda: datamodule_floor_fit(lab, DIGITS_CNN),
        "engine": lambda: lab.engine_fit(DIGITS_CNN),
    }
    take_turns(fits, 1)  # a first round pays what a first fit pays once
    fit = take_turns(fits, repeats)
    runs = {
        "untracked": lambda: lab.run(*DIGITS_CNN, "tracking=none"),
        "tracked": lambda: lab.run(*DIGITS_CNN, *LEAN),
    }
    take_turns(runs, 1)
    run = take_turns(runs, repeats)
    what = "CNN 16x32 on digits (1,797 1x8x8 images), one epoch of batches of 64"
    return [
        compared(
            "M2",
            f"{what}: untracked engine vs barebones Trainer",
            fit["floor"],
            fit["engine"],
            1.05,
        ),
        compared(
            "M2-tracked",
            f"{what}: tracked (metrics only) vs untracked",
            run["untracked"],
            run["tracked"],
            1.10,
        ),
    ]


class _Classifier(L.LightningModule):
    """The least module around the CNN: cross-entropy, Adam, no logging."""

    def __init__(self) -> None:
        super().__init__()
        self.net = CNN(in_channels=1, out_features=10)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def barebones_floor(epochs: int = 1) -> float:
    """Seconds of a barebones Trainer fitting the CNN in a minimal module over the digits
    datamodule (decoded before the clock starts)."""
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    data = DigitsDataModule(batch_size=64)
    data.setup("fit")
    torch.manual_seed(0)
    module = _Classifier()
    start = time.perf_counter()
    L.Trainer(max_epochs=epochs, barebones=True, accelerator="cpu").fit(module, datamodule=data)
    return time.perf_counter() - start


if __name__ == "__main__":  # the floor alone: python -m benchmarks.image_measures
    times = [barebones_floor() for _ in range(6)]
    print(f"barebones floor, CNN on digits, one epoch: {statistics.median(times[1:]):.4f} s")
