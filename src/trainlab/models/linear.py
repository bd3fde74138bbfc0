"""The model of note 20 and the form it is served in."""

from __future__ import annotations

import torch
from torch import nn


class LinearRegression(nn.Module):
    """`nn.Linear(in_features, out_features)`, as in note 20, with a choice of starting weights."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: str = "default",
        init_value: float = 0.0,
    ) -> None:
        super().__init__()
        self.lin = nn.Linear(in_features, out_features, bias=bias)
        if init != "default":
            value = 0.0 if init == "zeros" else init_value
            with torch.no_grad():
                for param in self.lin.parameters():
                    param.fill_(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Inputs of higher rank (an image) are one row of features each.
        return self.lin(x if x.ndim <= 2 else x.flatten(1))


class StandardizedModel(nn.Module):
    """`model((x - mean) / std)`: the trained network behind the scaling it was trained with, so
    that a logged model takes the raw numbers a person types."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


class ClassProbabilities(nn.Module):
    """A classifier's outputs as one probability per class: softmax over the class outputs, or
    for a single output (bce_with_logits) the sigmoid as the second class's probability."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.model(x)
        if output.shape[-1] == 1:
            positive = torch.sigmoid(output.reshape(-1))
            return torch.stack([1 - positive, positive], dim=1)
        return torch.softmax(output, dim=-1)
