"""A batch as a LightningDataModule gives it, of any structure: a tensor, a tuple or list of any
length, a dict, a dataclass or a named tuple, nested, with inputs of any rank and dtype.

trainlab looks at the first batch of a run (its shapes, the logged model's example, the lineage
digest) and never needs to unpack it for a LightningModule of the user's; trainlab's own module
reads `(inputs, targets)` pairs. Lightning's own `apply_to_collection` walks the structures, as
Lightning walks them to move a batch to the device.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from lightning_utilities.core.apply_func import apply_to_collection


def tensors_in(batch: Any) -> list[torch.Tensor]:
    """Every tensor the batch holds, in the order the structure lists them."""
    found: list[torch.Tensor] = []
    apply_to_collection(batch, torch.Tensor, found.append)
    return found


def as_pair(batch: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`(inputs, targets)` when the batch is a sequence of exactly two tensors, else None."""
    if isinstance(batch, list | tuple) and len(batch) == 2:
        inputs, targets = batch
        if isinstance(inputs, torch.Tensor) and isinstance(targets, torch.Tensor):
            return inputs, targets
    return None


def first_rows(batch: Any, rows: int) -> Any:
    """The same structure with each tensor cut to its first `rows` rows (0-d tensors kept)."""
    return apply_to_collection(
        batch, torch.Tensor, lambda t: t[:rows].detach().cpu() if t.ndim > 0 else t.detach()
    )


def to_device(batch: Any, device: torch.device | str, dtype: torch.dtype | None = None) -> Any:
    """Every tensor moved to `device`; floating ones cast to `dtype` when given."""

    def move(tensor: torch.Tensor) -> torch.Tensor:
        cast = dtype if dtype is not None and tensor.is_floating_point() else None
        return tensor.to(device=device, dtype=cast)

    return apply_to_collection(batch, torch.Tensor, move)


def row_count(batch: Any) -> int:
    """Rows in the batch: the length of its first tensor's first dimension (0 without one)."""
    for tensor in tensors_in(batch):
        if tensor.ndim > 0:
            return int(tensor.shape[0])
    return 0


def kind_of(batch: Any) -> str:
    """How a batch is built, for a message: `Tensor`, `dict`, `tuple of 3`, `Batch dataclass`."""
    if isinstance(batch, torch.Tensor):
        return "Tensor"
    if dataclasses.is_dataclass(batch):
        return f"{type(batch).__name__} dataclass"
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return f"{type(batch).__name__} named tuple"
    if isinstance(batch, list | tuple):
        return f"{type(batch).__name__} of {len(batch)}"
    return type(batch).__name__


def shapes_of(batch: Any) -> str:
    """Each tensor's shape and dtype, for a message: `(16, 1, 8, 8) float32, (16,) int64`."""
    return ", ".join(
        f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for t in tensors_in(batch)
    )
