"""What every step records: `train/loss`, `train/lr`, the parameters (`weight/<out>_<in>`,
`bias/<out>`, or their norms for large models), `ols/gap` and, when asked, `train/grad_norm`, in
one row per optimizer step.

Cost matters here, once per step: on the CPU a row is built from Python floats (reading a CPU
tensor is no sync; ~5 us for the seed's model against ~30 us for concatenating tensors); on an
accelerator it is one small tensor built on the device, read back with the others when the rows
are handed over (no per-step host sync). The learning rate is the optimizer's own Python float
(`param_groups[0]["lr"]`, which schedulers rewrite in place): no tensor, no sync.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

LOSS_KEY = "train/loss"
LR_KEY = "train/lr"
GAP_KEY = "ols/gap"
GRAD_NORM_KEY = "train/grad_norm"


def parameter_keys(module: nn.Module, limit: int) -> list[str]:
    """`weight/<out>_<in>` and `bias/<out>` for small tensors, `<name>/norm` for larger ones.

    A tensor is named by the last part of its name (`weight`, as the seed's nn.Linear) when that
    is unique in the module, else by its whole name (`net.0.weight`), so keys never collide."""
    named = list(module.named_parameters())
    shorts = [name.rsplit(".", 1)[-1] for name, _ in named]
    keys: list[str] = []
    for (name, param), short in zip(named, shorts, strict=True):
        label = short if shorts.count(short) == 1 else name
        if param.numel() > limit:
            keys.append(f"{label}/norm")
        elif param.dim() == 2:
            keys += [
                f"{label}/{o}_{i}" for o in range(param.shape[0]) for i in range(param.shape[1])
            ]
        else:
            keys += [f"{label}/{o}" for o in range(param.numel())]
    return keys


def row_keys(
    module: nn.Module, limit: int, ols_loss: float | None, grad_norm: bool = False
) -> list[str]:
    gap = [GAP_KEY] if ols_loss is not None else []
    norm = [GRAD_NORM_KEY] if grad_norm else []
    return [LOSS_KEY, LR_KEY, *parameter_keys(module, limit), *gap, *norm]


def step_row(
    loss: torch.Tensor,
    lr: float,
    params: Iterable[torch.Tensor],
    limit: int,
    ols_loss: float | None,
    grad_norm: torch.Tensor | None = None,
) -> torch.Tensor | list[float]:
    """The row of `row_keys`: Python floats for CPU tensors, a float64 device tensor otherwise."""
    params = list(params)
    if loss.device.type == "cpu":
        value = loss.item()
        row = [value, lr]
        for p in params:
            p = p.detach()
            if p.numel() > limit:
                row.append(p.norm().item())
            else:
                row += p.reshape(-1).tolist()
        if ols_loss is not None:
            row.append(value - ols_loss)
        if grad_norm is not None:
            row.append(grad_norm.item())
        return row
    loss = loss.detach().reshape(1).double()
    parts = [loss, loss.new_full((1,), lr)]  # a fill on the device: no host-to-device copy
    for p in params:
        p = p.detach()
        parts.append(p.norm().reshape(1).double() if p.numel() > limit else p.reshape(-1).double())
    if ols_loss is not None:
        parts.append(loss - ols_loss)
    if grad_norm is not None:
        parts.append(grad_norm.reshape(1).double())
    return torch.cat(parts)


def gradient_norm(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all gradients together, as gradient clipping by norm measures it (a tensor
    on the parameters' device: no sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
