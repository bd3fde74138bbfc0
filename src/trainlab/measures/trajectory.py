"""What every step records: `train/loss`, `train/lr`, the parameters, `ols/gap` and `optimum/gap`
(measures/references.py) and, when asked, `train/grad_norm`, in one row per optimizer step.

The parameters of a linear model (the seed's): `weight/<out>_<in>` and `bias/<out>`, or
`<name>/norm` for a tensor over `tracking.trajectory_limit` values. Of any other model: a norm per
parameter tensor (`net.0.weight/norm`, ...), and every value too while the whole model has at
most `trajectory_limit` of them. A tensor is named by the last part of its name (`weight`) when
that is unique in the module, else by its whole name, so keys never collide.

Cost matters here, once per step: on the CPU a row is built from Python floats (reading a CPU
tensor is no sync; a few microseconds for the seed's model against several times that for
concatenating tensors); on an accelerator it is one small tensor built on the device, read back
with the others when the rows are handed over (no per-step host sync). The learning rate is the
optimizer's own Python float (`param_groups[0]["lr"]`, which schedulers rewrite in place).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from trainlab.measures.references import OLS_GAP, OPTIMUM_GAP, References

LOSS_KEY = "train/loss"
LR_KEY = "train/lr"
GAP_KEY = OLS_GAP
GRAD_NORM_KEY = "train/grad_norm"
MODEL_PREFIX = "model."


@dataclass(frozen=True)
class RowSpec:
    """What a run's rows hold beside the loss and the learning rate."""

    trajectory_limit: int = 64
    references: References = field(default_factory=References)
    grad_norm: bool = False
    norms_per_tensor: bool = False  # a model that is not linear: a norm for every tensor


def parameter_keys(module: nn.Module, spec: RowSpec) -> list[str]:
    named = list(module.named_parameters())
    if named and all(name.startswith(MODEL_PREFIX) for name, _ in named):
        # trainlab's module holds the model as `model`: names are the model's own.
        named = [(name[len(MODEL_PREFIX) :], param) for name, param in named]
    shorts = [name.rsplit(".", 1)[-1] for name, _ in named]
    every_value = sum(p.numel() for _, p in named) <= spec.trajectory_limit
    keys: list[str] = []
    for (name, param), short in zip(named, shorts, strict=True):
        label = short if shorts.count(short) == 1 else name
        if spec.norms_per_tensor:
            keys.append(f"{label}/norm")
            if every_value:
                keys += value_keys(label, param)
        elif param.numel() > spec.trajectory_limit:
            keys.append(f"{label}/norm")
        else:
            keys += value_keys(label, param)
    return keys


def value_keys(label: str, param: torch.Tensor) -> list[str]:
    if param.dim() == 2:
        rows, columns = param.shape
        return [f"{label}/{o}_{i}" for o in range(rows) for i in range(columns)]
    return [f"{label}/{o}" for o in range(param.numel())]


def row_keys(module: nn.Module, spec: RowSpec) -> list[str]:
    refs = spec.references
    gaps = [OLS_GAP] if refs.ols_loss is not None else []
    gaps += [OPTIMUM_GAP] if refs.optimum is not None else []
    norm = [GRAD_NORM_KEY] if spec.grad_norm else []
    return [LOSS_KEY, LR_KEY, *parameter_keys(module, spec), *gaps, *norm]


def step_row(
    loss: torch.Tensor,
    lr: float,
    params: Iterable[torch.Tensor],
    spec: RowSpec,
    grad_norm: torch.Tensor | None = None,
) -> torch.Tensor | list[float]:
    """The row of `row_keys`: Python floats for CPU tensors, a float64 device tensor otherwise."""
    params = [p.detach() for p in params]
    limit, refs = spec.trajectory_limit, spec.references
    optimum = refs.optimum
    every_value = spec.norms_per_tensor and sum(p.numel() for p in params) <= limit
    if loss.device.type == "cpu":
        value = loss.item()
        row = [value, lr]
        for p in params:
            if spec.norms_per_tensor:
                row.append(p.norm().item())
                if every_value:
                    row += p.reshape(-1).tolist()
            elif p.numel() > limit:
                row.append(p.norm().item())
            else:
                row += p.reshape(-1).tolist()
        if refs.ols_loss is not None:
            row.append(value - refs.ols_loss)
        if optimum is not None:
            penalty = sum(float((p.double() ** 2).sum()) for p in params) if optimum.penalty else 0
            row.append(value + optimum.penalty * penalty - optimum.loss)
        if grad_norm is not None:
            row.append(grad_norm.item())
        return row
    loss = loss.detach().reshape(1).double()
    parts = [loss, loss.new_full((1,), lr)]  # a fill on the device: no host-to-device copy
    for p in params:
        if spec.norms_per_tensor or p.numel() > limit:
            parts.append(p.norm().reshape(1).double())
        if every_value or (not spec.norms_per_tensor and p.numel() <= limit):
            parts.append(p.reshape(-1).double())
    if refs.ols_loss is not None:
        parts.append(loss - refs.ols_loss)
    if optimum is not None:
        gap = loss - optimum.loss
        if optimum.penalty:
            gap = gap + optimum.penalty * sum((p.double() ** 2).sum() for p in params)
        parts.append(gap)
    if grad_norm is not None:
        parts.append(grad_norm.reshape(1).double())
    return torch.cat(parts)


def gradient_norm(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all gradients together, as gradient clipping by norm measures it (a tensor
    on the parameters' device: no sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
