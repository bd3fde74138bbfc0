"""`model=custom model.target=mypkg.Net`: a model class of the user's, from the Python path.

An nn.Module is given `in_features` and `out_features` when its constructor takes them (named
so, as nn.Linear names them), and `model.kwargs`; trainlab's LightningModule wraps it with the
configured loss and optimizer. A LightningModule is used as the module itself: its own
training_step, configure_optimizers and self.log calls (also given in_features/out_features when
it takes them); the loss, optimizer and scheduler groups then do not apply.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
from hydra.utils import get_object
from torch import nn

from trainlab.errors import ConfigError, one_line


def custom_model(
    target: str, kwargs: dict[str, Any], in_features: int, out_features: int
) -> nn.Module:
    """The user's class built: an nn.Module (possibly a LightningModule)."""
    try:
        # Hydra logs a failed lookup as an ERROR of its own before raising: the one line below
        # says it, once.
        with quiet_logger("hydra.utils"):
            cls = get_object(target)
    except Exception as err:
        raise ConfigError(
            f"model.target={target!r} cannot be imported ({one_line(root_cause(err))}); expected "
            "a class on the Python path (set PYTHONPATH to the folder that holds its package)"
        ) from None
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise ConfigError(
            f"model.target={target!r} is a {type(cls).__name__}, not a class; expected a "
            "torch.nn.Module or lightning.LightningModule subclass"
        )
    accepted = inspect.signature(cls.__init__).parameters
    shapes = {"in_features": in_features, "out_features": out_features}
    given = {k: v for k, v in shapes.items() if k in accepted}
    try:
        return cls(**given, **kwargs)
    except TypeError as err:
        what = ", ".join(f"model.kwargs.{k}" for k in kwargs) or "no model.kwargs"
        raise ConfigError(
            f"model.target={target!r}: {one_line(err)} (given {what}"
            f"{', ' + ', '.join(given) if given else ''}); expected the arguments "
            f"{cls.__name__}.__init__ takes (+model.kwargs.NAME=VALUE)"
        ) from None


def root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


@contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level, logger.level = logger.level, logging.CRITICAL
    try:
        yield
    finally:
        logger.setLevel(level)


def is_lightning_module(model: nn.Module) -> bool:
    """A user's LightningModule trains itself; trainlab does not wrap it."""
    return isinstance(model, L.LightningModule)
