"""A step's row (measures/trajectory.step_row on the CPU) holds the parameters as they are at that
step: after in-place optimizer steps, after a tensor's storage was swapped, for tensors that are
not contiguous; one value per key of `row_keys`, in their order, for linear models and others."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.measures.references import Optimum, References
from trainlab.measures.trajectory import RowSpec, row_keys, step_row


class Transposed(nn.Module):
    """A parameter that is not contiguous: flattening it copies it."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 2).t())
        self.bias = nn.Parameter(torch.randn(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


def mlp(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, 1))


CASES = {  # the module, its inputs' width, what the rows hold
    "seed": (lambda: nn.Linear(1, 1), 1, RowSpec(references=References(ols_loss=0.25))),
    "a tensor over the limit": (lambda: nn.Linear(40, 2), 40, RowSpec(trajectory_limit=64)),
    "every value and the norms": (lambda: mlp(4), 2, RowSpec(norms_per_tensor=True)),
    "the norms only": (lambda: mlp(64), 2, RowSpec(norms_per_tensor=True, grad_norm=True)),
    "not contiguous": (Transposed, 2, RowSpec()),
    "optimum with a penalty": (
        lambda: nn.Linear(2, 1),
        2,
        RowSpec(references=References(optimum=Optimum(loss=0.5, penalty=0.1))),
    ),
}


def expected_row(module: nn.Module, spec: RowSpec, loss: float, lr: float, grad: float | None):
    """The row from its definition, reading every tensor afresh."""
    params = [p.detach() for p in module.parameters()]
    every_value = spec.norms_per_tensor and sum(p.numel() for p in params) <= spec.trajectory_limit
    row = [loss, lr]
    for p in params:
        small = p.numel() <= spec.trajectory_limit
        if spec.norms_per_tensor or not small:
            row.append(p.norm().item())
        if every_value if spec.norms_per_tensor else small:
            row += p.reshape(-1).tolist()
    refs = spec.references
    if refs.ols_loss is not None:
        row.append(loss - refs.ols_loss)
    if refs.optimum is not None:
        penalty = sum(float((p.double() ** 2).sum()) for p in params)
        row.append(loss + refs.optimum.penalty * penalty - refs.optimum.loss)
    return row + ([grad] if grad is not None else [])


@pytest.mark.parametrize("case", list(CASES))
def test_a_row_reads_the_parameters_through_steps_and_swaps(case):
    torch.manual_seed(0)
    build, width, spec = CASES[case]
    module = build()
    keys = row_keys(module, spec)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(8, width)
    for step in range(4):
        loss = module(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()  # in place
        if step == 2:  # a storage swapped (`param.data = ...`)
            first = next(module.parameters())
            first.data = torch.randn_like(first) * 3
        grad = torch.tensor(0.5 + step) if spec.grad_norm else None
        row = step_row(loss.detach(), 0.1, list(module.parameters()), spec, grad)
        want = expected_row(module, spec, loss.item(), 0.1, None if grad is None else grad.item())
        assert len(row) == len(keys)
        assert row == want, step
