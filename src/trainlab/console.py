"""What a run prints: the seed's lines (`epoch i, w = ..., loss = ...`) and predictions."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


def format_prediction(x: torch.Tensor, pred: torch.Tensor | None, spec: str = " .3f") -> str:
    """`f(5) =  9.433` for one row of one feature, as note 20 prints it; rows listed otherwise.

    `spec` is the number format: note 20 prints " .3f"; notes 17 and 18 print the whole float.
    """
    assert pred is not None
    parts = []
    for row, out in zip(x.tolist(), pred.tolist(), strict=True):
        arg = f"{row[0]:g}" if len(row) == 1 else ", ".join(f"{v:g}" for v in row)
        value = (
            f"{out[0]:{spec}}"
            if len(out) == 1
            else "[" + ", ".join(f"{v:{spec.strip()}}" for v in out) + "]"
        )
        parts.append(f"f({arg}) = {value}")
    return "; ".join(parts)


def format_weights(module: torch.nn.Module) -> str:
    """The first weight, as the seed prints it; a short list for a few; a norm for many."""
    weight = next(module.parameters()).detach().reshape(-1)
    if weight.numel() == 1:
        return f"w = {weight.item():.8g}"
    if weight.numel() <= 4:
        return "w = [" + ", ".join(f"{v:.6g}" for v in weight.tolist()) + "]"
    return f"|w| = {weight.norm().item():.6g}"


class ConsolePrinter(L.Callback):
    """Prints the seed's line every `every` optimizer steps (0: never); each print syncs the host."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step - 1
        if not self.every or step % self.every or not trainer.is_global_zero:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        where = f"epoch {trainer.current_epoch}"
        if trainer.num_training_batches != 1:
            where += f" step {step}"
        print(f"{where}, {format_weights(pl_module)}, loss = {loss.item():.8g}")
