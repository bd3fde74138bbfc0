"""`model=mlp`: a small fully connected network for tabular rows (or any input, flattened)."""

from __future__ import annotations

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}
NORMS: dict[str, type[nn.Module]] = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


class MLP(nn.Module):
    """Linear -> norm? -> activation -> dropout? per hidden layer, then a Linear to the outputs."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: list[int] | tuple[int, ...] = (64, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        norm: str | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for units in hidden:
            layers.append(nn.Linear(width, units, bias=bias))
            if norm is not None:
                layers.append(NORMS[norm](units))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        layers.append(nn.Linear(width, out_features, bias=bias))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        # Inputs of higher rank (an image) are one row of features each.
        return self.net(x if x.ndim <= 2 else x.flatten(1))
