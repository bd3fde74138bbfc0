"""Schemas of the `model` group: the seed's linear model, a small network, and a model of yours.

`linear` and `mlp` are built with `hydra.utils.instantiate(model, in_features=..., out_features=...)`
(the data decides both: features; targets, or classes, or 1 for two classes under
bce_with_logits). `custom` names a class on the Python path: an nn.Module gets `in_features` and
`out_features` when its constructor takes them (and `model.kwargs`), a LightningModule is used as
the module itself, with its own training_step and configure_optimizers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from trainlab.errors import require

INITS = ("default", "zeros", "constant")
ACTIVATIONS = ("relu", "tanh", "gelu", "silu", "sigmoid", "leaky_relu", "elu")
NORMS = ("batch", "layer")


@dataclass
class ModelConfig:
    _target_: str = MISSING


@dataclass
class LinearModelConfig(ModelConfig):
    """nn.Linear(n_features, n_targets), as LinearRegression in note 20."""

    _target_: str = "trainlab.models.linear.LinearRegression"
    bias: bool = True
    init: str = "default"  # default (PyTorch's), zeros (the seed's w=0) or constant
    init_value: float = 0.0

    def __post_init__(self) -> None:
        require(self.init in INITS, "model.init", self.init, f"one of {', '.join(INITS)}")


@dataclass
class MLPConfig(ModelConfig):
    """Linear -> activation (-> norm) (-> dropout) for each hidden layer, then a Linear out."""

    _target_: str = "trainlab.models.mlp.MLP"
    hidden: list[int] = field(default_factory=lambda: [64, 64])  # units per hidden layer
    activation: str = "relu"
    dropout: float = 0.0  # after each hidden layer's activation
    norm: str | None = None  # batch | layer: after each hidden Linear; null: none
    bias: bool = True

    def __post_init__(self) -> None:
        ok = bool(self.hidden) and all(units > 0 for units in self.hidden)
        require(ok, "model.hidden", self.hidden, "a list of layer sizes > 0, e.g. [64,64]")
        names = ", ".join(ACTIVATIONS)
        require(self.activation in ACTIVATIONS, "model.activation", self.activation, names)
        require(0 <= self.dropout < 1, "model.dropout", self.dropout, "0 <= x < 1")
        if self.norm is not None:
            require(self.norm in NORMS, "model.norm", self.norm, "batch, layer or null")


@dataclass
class CustomModelConfig(ModelConfig):
    """A class of yours: `model=custom model.target=mypkg.Net +model.kwargs.width=32`."""

    _target_: str = "trainlab.models.user_model.custom_model"
    target: str = MISSING  # package.module.Class, importable from the Python path
    kwargs: dict[str, Any] = field(default_factory=dict)  # the constructor's other arguments

    def __post_init__(self) -> None:
        ok = "." in self.target and not self.target.startswith(".")
        require(ok, "model.target", self.target, "a class path like mypkg.models.Net")
