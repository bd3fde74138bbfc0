"""`model=custom model.target=mypkg.Net`: a model class of the user's, from the Python path.

An nn.Module is given `in_features` and `out_features` when its constructor takes them (named
so, as nn.Linear names them; `in_channels` and `in_shape` for inputs of higher rank), and
`model.kwargs`; trainlab's LightningModule wraps it with the
configured loss and optimizer. A LightningModule is used as the module itself: its own
training_step, configure_optimizers and self.log calls (also given in_features/out_features when
it takes them); the loss, optimizer and scheduler groups then do not apply.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import nn

from trainlab.user_classes import construct, import_class

KINDS = "a torch.nn.Module or lightning.LightningModule subclass"


def custom_model(target: str, kwargs: dict[str, Any], **shapes: Any) -> nn.Module:
    """The user's class built: an nn.Module (possibly a LightningModule), given the shape
    arguments its constructor names (models/build.py: in_features, in_channels, in_shape,
    out_features)."""
    cls = import_class("model.target", target, nn.Module, KINDS)
    return construct(cls, "model", target, kwargs, shapes)


def is_lightning_module(model: nn.Module) -> bool:
    """A user's LightningModule trains itself; trainlab does not wrap it."""
    return isinstance(model, L.LightningModule)
