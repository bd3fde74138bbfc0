"""`data=custom data.target=mypkg.data.MyDataModule`: a LightningDataModule of the user's.

The Trainer fits with the user's datamodule itself (`trainer.fit(module, datamodule=...)`):
its loaders, its splits, its batches, its DDP sampler (Lightning's). trainlab only looks: after
`prepare_data()` and `setup("fit")` it takes the first training batch (and the first validation
batch, when the datamodule has a val_dataloader), of any structure (data/samples.py): it gives
the model its shapes, the logged model its example and the lineage its digest. Lightning calls
`prepare_data` and `setup("fit")` again when the fit starts, as its docs expect of any
datamodule. A LightningModule of the user's reads the batches itself; trainlab's own module
needs `(inputs, targets)` pairs (inputs of any rank: `check_pairs`). With pairs, `final/*`
losses are taken over whole loaders and `test/*` from its test_dataloader (the batches
concatenated: what the recorder scores).

A classifier's class names come from the datamodule's `classes` (a sequence of names), else its
`num_classes` (`0 .. n-1`), else from the largest label in one pass over the training loader.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.model_helpers import is_overridden

from trainlab.data.dataset import Dataset
from trainlab.data.lineage import DataRecord, digest_arrays
from trainlab.data.samples import as_pair, kind_of, row_count, shapes_of, tensors_in
from trainlab.errors import ConfigError
from trainlab.user_classes import construct, import_class

KINDS = "a lightning.LightningDataModule subclass"
Batch = tuple[torch.Tensor, torch.Tensor]


class DataModuleSource:
    """`data=custom`'s `_target_`: builds the user's datamodule class (`data.target`) with
    `data.kwargs`, seeded first; `dataset` sets it up and takes its first batches."""

    def __init__(self, target: str, kwargs: dict[str, Any], name: str = "custom") -> None:
        self.target, self.kwargs, self.name = target, dict(kwargs), name

    def dataset(self, seed: int, task: str) -> Dataset:
        """The user's datamodule, set up, with its first batches as the run's sample."""
        cls = import_class("data.target", self.target, L.LightningDataModule, KINDS)
        # Seeded before the user's code runs: a random split in setup() is the same every run.
        L.seed_everything(seed, verbose=False)
        module = construct(cls, "data", self.target, self.kwargs, {})
        module.prepare_data()
        module.setup("fit")
        return from_datamodule(module, self.target, task)


def from_datamodule(
    module: L.LightningDataModule,
    target: str,
    task: str,
    name: str | None = None,
    source: str | None = None,
) -> Dataset:
    """A set-up datamodule as the run's data: its first training (and validation) batch as the
    sample, whatever their structure; inputs and targets where the batches are pairs. Its
    lineage names `name` (else the class) and `source` (a folder; else the class path)."""
    batch = first_batch(module, "train_dataloader", target)
    val = first_batch(module, "val_dataloader", target) if implements(module, "val") else None
    pair, val_pair = as_pair(batch), as_pair(val)
    x, y = pair if pair is not None else (None, None)
    classes = class_names(module, target, task, y)
    table = x is not None and x.ndim == 2
    features = [str(f) for f in getattr(module, "feature_names", None) or []]
    if table:
        width = x.shape[1]
        features = features if len(features) == width else [f"x{i}" for i in range(width)]
    else:
        features = []
    targets = target_names(y)
    splits = {"training": batch, **({"validation": val} if val is not None else {})}
    return Dataset(
        x_train=x,
        y_train=y,
        x_val=val_pair[0] if val_pair is not None else None,
        y_val=val_pair[1] if val_pair is not None else None,
        feature_names=features,
        target_names=targets,
        classes=classes,
        lineage=lineage(module, target, splits, features, targets, classes, name, source),
        datamodule=module,
        sample=batch,
        val_sample=val,
    )


def first_batch(module: L.LightningDataModule, hook: str, target: str) -> Any:
    """The loader's first batch as it gives it (any structure); one line for an empty loader."""
    batch = next(iter(getattr(module, hook)()), None)
    if batch is None:
        raise ConfigError(
            f"data.target={target!r}: its {hook}() gives no batch; expected at least one"
        )
    return batch


def target_names(y: torch.Tensor | None) -> list[str]:
    if y is None:
        return []
    return ["y"] if y.ndim <= 1 else [f"y{j}" for j in range(y.shape[1])] if y.ndim == 2 else ["y"]


def check_pairs(data: Dataset, task: str, model: str, dtype: torch.dtype) -> None:
    """What trainlab's own module needs of a datamodule's batches: `(inputs, targets)` pairs of
    any input rank, targets the loss can take, float inputs in the run's precision. A
    LightningModule of the user's reads its batches itself and is never checked."""
    if data.datamodule is None:
        return
    target = type(data.datamodule).__name__
    x, y = data.x_train, data.y_train
    if x is None or y is None:
        raise ConfigError(
            f"data: {target}'s train_dataloader() gives {kind_of(data.sample)} batches; "
            f"expected batches of two tensors, (inputs, targets), for model={model} (or a "
            "LightningModule of yours, model=custom, whose training_step reads them)"
        )
    regression = task == "regression"
    if len(y) != len(x) or (regression and (y.ndim != 2 or not y.is_floating_point())):
        raise ConfigError(
            f"data: {target}'s train_dataloader() gives inputs of shape {tuple(x.shape)} and "
            f"targets of shape {tuple(y.shape)} ({y.dtype}); expected as many targets as inputs, "
            + ("float targets (N, targets)" if regression else "class indices (N,)")
        )
    if not regression and (y.ndim != 1 or y.is_floating_point()):
        raise ConfigError(
            f"data: {target}'s train_dataloader() gives targets of shape {tuple(y.shape)} "
            f"({y.dtype}) for a classification loss; expected int64 class indices of shape (N,)"
        )
    if x.is_floating_point() and x.dtype != dtype:
        raise ConfigError(
            f"data: {target}'s batches hold {x.dtype} inputs and the run trains in {dtype}; "
            f"expected {dtype} inputs (or device.precision="
            f"{'64' if x.dtype == torch.float64 else '32'})"
        )


def class_names(
    module: L.LightningDataModule, target: str, task: str, y: torch.Tensor | None
) -> tuple[str, ...]:
    """The datamodule's `classes` (names), else its `num_classes`, else, for a classification
    loss, the labels of one pass over the training loader; none for float (regression) targets."""
    if y is not None and y.is_floating_point():
        return ()
    names = getattr(module, "classes", None)
    if isinstance(names, Sequence) and not isinstance(names, str) and len(names) >= 2:
        return tuple(str(name) for name in names)
    count = getattr(module, "num_classes", None)
    if not isinstance(count, int):
        if task == "regression" or y is None:
            return ()
        count = 1 + max(int(labels.max()) for _, labels in batches(module, "train"))
    if count < 2:
        raise ConfigError(
            f"data.target={target!r}: its training labels hold one class; expected at "
            "least two (or a `classes` attribute naming them)"
        )
    return tuple(str(k) for k in range(count))


def lineage(
    module: L.LightningDataModule,
    target: str,
    splits: dict[str, Any],
    features: list[str],
    targets: list[str],
    classes: tuple[str, ...],
    name: str | None = None,
    source: str | None = None,
) -> tuple[DataRecord, ...]:
    """The datamodule's class (or its folder) as the source; the digest of every tensor its
    first batch holds."""
    sizes = {"training": dataset_size(module.train_dataloader)}
    if "validation" in splits:
        sizes["validation"] = dataset_size(module.val_dataloader)
    return tuple(
        DataRecord(
            name=name or target.rsplit(".", 1)[-1],
            context=context,
            digest=digest_arrays(
                [t.detach().cpu().double().numpy() for t in tensors_in(batch)],
                features,
                targets,
                classes,
            ),
            source=source or target,
            source_type="local" if source else "code",
            features=tuple(features),
            targets=tuple(targets),
            rows=sizes[context] if sizes[context] is not None else row_count(batch),
            classes=classes,
            tensors=f"{kind_of(batch)}: {shapes_of(batch)}",
        )
        for context, batch in splits.items()
    )


def implements(module: L.LightningDataModule, stage: str) -> bool:
    """Whether the datamodule has its own `<stage>_dataloader` (LightningDataModule's raises),
    on its class or bound on the instance (data/images.py binds the splits it has)."""
    return is_overridden(f"{stage}_dataloader", module, L.LightningDataModule)


def dataset_size(make_loader: Any) -> int | None:
    """Rows the loader serves: its dataset's length (a DataLoader), or its own row count
    (data/batches.py's TensorBatches); None for an IterableDataset without a length."""
    loader = make_loader()
    dataset = getattr(loader, "dataset", None)
    try:
        return len(dataset) if dataset is not None else getattr(loader, "rows", None)
    except TypeError:
        return None


def batches(module: L.LightningDataModule, stage: str) -> Iterator[Batch]:
    """Every (inputs, targets) batch of the `stage` ("train", "val", "test") loader, on the CPU
    (for pair batches only: the callers checked the first one)."""
    for batch in getattr(module, f"{stage}_dataloader")():
        pair = as_pair(batch)
        if pair is None:
            raise ConfigError(
                f"data: {type(module).__name__}'s {stage}_dataloader() gives a "
                f"{kind_of(batch)} batch after (inputs, targets) pairs; expected pairs throughout"
            )
        yield pair[0].cpu(), pair[1].cpu()


def test_rows(module: L.LightningDataModule) -> Batch | None:
    """Its test_dataloader's rows, concatenated (after `setup("test")`); None without one."""
    if not implements(module, "test"):
        return None
    module.setup("test")
    parts = list(batches(module, "test"))
    if not parts:
        return None
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])
