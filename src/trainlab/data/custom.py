"""`data=custom data.target=mypkg.data.MyDataModule`: a LightningDataModule of the user's.

The Trainer fits with the user's datamodule itself (`trainer.fit(module, datamodule=...)`):
its loaders, its splits, its batches, its DDP sampler (Lightning's). trainlab only looks: after
`prepare_data()` and `setup("fit")` it takes the first training batch (and the first validation
batch, when the datamodule has a val_dataloader), which gives the model its shapes, the plots
and the logged model's signature their rows, and the lineage its digest. Lightning calls
`prepare_data` and `setup("fit")` again when the fit starts, as its docs expect of any
datamodule. At the end, `final/*` losses are taken over whole loaders and `test/*` from its
test_dataloader (the batches concatenated: what the recorder scores).

A classifier's class names come from the datamodule's `classes` (a sequence of names), else its
`num_classes` (`0 .. n-1`), else from the largest label in one pass over the training loader.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch

from trainlab.config.data import CustomDataConfig
from trainlab.data.dataset import Dataset
from trainlab.data.lineage import DataRecord, digest
from trainlab.errors import ConfigError
from trainlab.user_classes import construct, import_class

KINDS = "a lightning.LightningDataModule subclass"
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class DataModuleSource(CustomDataConfig):
    def dataset(self, seed: int, task: str) -> Dataset:
        """The user's datamodule, set up, with its first batches as the run's sample rows."""
        assert self.target is not None  # the schema requires it
        cls = import_class("data.target", self.target, L.LightningDataModule, KINDS)
        # Seeded before the user's code runs: a random split in setup() is the same every run.
        L.seed_everything(seed, verbose=False)
        module = construct(cls, "data", self.target, self.kwargs, {})
        module.prepare_data()
        module.setup("fit")
        x, y = self.first_batch(module, "train_dataloader", task)
        val = (
            self.first_batch(module, "val_dataloader", task) if implements(module, "val") else None
        )
        classes = self.class_names(module, task, y)
        features = [str(f) for f in getattr(module, "feature_names", None) or []]
        features = features if len(features) == x.shape[1] else [f"x{i}" for i in range(x.shape[1])]
        targets = ["y"] if y.ndim == 1 else [f"y{j}" for j in range(y.shape[1])]
        splits = {"training": (x, y), **({"validation": val} if val is not None else {})}
        return Dataset(
            x_train=x,
            y_train=y,
            x_val=val[0] if val is not None else None,
            y_val=val[1] if val is not None else None,
            feature_names=features,
            target_names=targets,
            classes=classes,
            lineage=self.lineage(module, splits, features, targets, classes),
            datamodule=module,
        )

    def first_batch(self, module: L.LightningDataModule, hook: str, task: str) -> Batch:
        loader = getattr(module, hook)()
        batch = next(iter(loader), None)
        if not (isinstance(batch, list | tuple) and len(batch) == 2):
            raise ConfigError(
                f"data.target={self.target!r}: its {hook}() gives {type(batch).__name__} batches; "
                "expected batches of two tensors, (inputs, targets)"
            )
        x, y = (torch.as_tensor(part) for part in batch)
        regression = task == "regression"
        if (
            x.ndim != 2
            or len(y) != len(x)
            or (regression and (y.ndim != 2 or not y.is_floating_point()))
        ):
            raise ConfigError(
                f"data.target={self.target!r}: its {hook}() gives inputs of shape "
                f"{tuple(x.shape)} and targets of shape {tuple(y.shape)} ({y.dtype}); expected "
                "inputs (N, features) and "
                + ("float targets (N, targets)" if regression else "class indices (N,)")
            )
        if not regression and (y.ndim != 1 or y.is_floating_point()):
            raise ConfigError(
                f"data.target={self.target!r}: its {hook}() gives targets of shape "
                f"{tuple(y.shape)} ({y.dtype}) for a classification loss; expected int64 class "
                "indices of shape (N,)"
            )
        return x, y

    def class_names(
        self, module: L.LightningDataModule, task: str, y: torch.Tensor
    ) -> tuple[str, ...]:
        if task == "regression":
            return ()
        names = getattr(module, "classes", None)
        if isinstance(names, Sequence) and not isinstance(names, str) and len(names) >= 2:
            return tuple(str(name) for name in names)
        count = getattr(module, "num_classes", None)
        if not isinstance(count, int):  # the labels of one pass over the training loader
            count = 1 + max(int(labels.max()) for _, labels in batches(module, "train"))
        if count < 2:
            raise ConfigError(
                f"data.target={self.target!r}: its training labels hold one class; expected at "
                "least two (or a `classes` attribute naming them)"
            )
        return tuple(str(k) for k in range(count))

    def lineage(
        self,
        module: L.LightningDataModule,
        splits: dict[str, Batch],
        features: list[str],
        targets: list[str],
        classes: tuple[str, ...],
    ) -> tuple[DataRecord, ...]:
        """The datamodule's class as the source; the digest of the first batch it gave."""
        assert self.target is not None
        sizes = {"training": dataset_size(module.train_dataloader)}
        if "validation" in splits:
            sizes["validation"] = dataset_size(module.val_dataloader)
        return tuple(
            DataRecord(
                name=self.target.rsplit(".", 1)[-1],
                context=context,
                digest=digest(x.double().numpy(), y.double().numpy(), features, targets, classes),
                source=self.target,
                source_type="code",
                features=tuple(features),
                targets=tuple(targets),
                rows=sizes[context] if sizes[context] is not None else len(x),
                classes=classes,
            )
            for context, (x, y) in splits.items()
        )


def implements(module: L.LightningDataModule, stage: str) -> bool:
    """Whether the user's class defines `<stage>_dataloader` (LightningDataModule's raises)."""
    hook = f"{stage}_dataloader"
    return getattr(type(module), hook) is not getattr(L.LightningDataModule, hook)


def dataset_size(make_loader: Any) -> int | None:
    dataset = getattr(make_loader(), "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:  # an IterableDataset without a length
        return None


def batches(module: L.LightningDataModule, stage: str) -> Iterator[Batch]:
    """Every (inputs, targets) batch of the `stage` ("train", "val", "test") loader, on the CPU."""
    for x, y in getattr(module, f"{stage}_dataloader")():
        yield torch.as_tensor(x).cpu(), torch.as_tensor(y).cpu()


def test_rows(module: L.LightningDataModule) -> Batch | None:
    """Its test_dataloader's rows, concatenated (after `setup("test")`); None without one."""
    if not implements(module, "test"):
        return None
    module.setup("test")
    parts = list(batches(module, "test"))
    if not parts:
        return None
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def check_dtype(data: Dataset, dtype: torch.dtype) -> None:
    """The user's inputs in the run's precision: the module's weights are cast to it."""
    if data.datamodule is not None and data.x_train.dtype != dtype:
        raise ConfigError(
            f"data.target: its batches hold {data.x_train.dtype} inputs and the run trains in "
            f"{dtype}; expected {dtype} inputs (or device.precision="
            f"{'64' if data.x_train.dtype == torch.float64 else '32'})"
        )
