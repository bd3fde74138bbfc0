"""A class of the user's, named by a dotted path in the config and built with its keyword
arguments: `model=custom model.target=...` (models/user_model.py) and `data=custom data.target=...`
(data/custom.py) share these one-line errors, so both say the same thing the same way.

Layer 0: the base class the user's must extend (nn.Module, LightningDataModule) is the caller's,
so nothing heavy is imported here.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hydra.utils import get_object

from trainlab.errors import ConfigError, one_line


def import_class(key: str, target: str, base: type, kinds: str) -> type:
    """The class `key=target` names, a subclass of `base` (`kinds` says which, for the line)."""
    try:
        # Hydra logs a failed lookup as an ERROR of its own before raising: the one line below
        # says it, once.
        with quiet_logger("hydra.utils"):
            cls = get_object(target)
    except Exception as err:
        raise ConfigError(
            f"{key}={target!r} cannot be imported ({one_line(root_cause(err))}); expected "
            "a class on the Python path (set PYTHONPATH to the folder that holds its package)"
        ) from None
    if not inspect.isclass(cls):
        raise ConfigError(
            f"{key}={target!r} is a {type(cls).__name__}, not a class; expected {kinds}"
        )
    if not issubclass(cls, base):
        raise ConfigError(
            f"{key}={target!r} is the class {cls.__name__}, which does not extend "
            f"{base.__module__}.{base.__name__}; expected {kinds}"
        )
    return cls


def construct(
    cls: type, key: str, target: str, kwargs: dict[str, Any], shapes: dict[str, Any]
) -> Any:
    """`cls(**shapes it takes, **kwargs)`; arguments it does not take are one line naming them
    (`key` is the config group: model.kwargs.NAME, data.kwargs.NAME)."""
    accepted = inspect.signature(cls.__init__).parameters
    given = {k: v for k, v in shapes.items() if k in accepted}
    try:
        return cls(**given, **kwargs)
    except TypeError as err:
        what = ", ".join(f"{key}.kwargs.{k}" for k in kwargs) or f"no {key}.kwargs"
        raise ConfigError(
            f"{key}.target={target!r}: {one_line(err)} (given {what}"
            f"{', ' + ', '.join(given) if given else ''}); expected the arguments "
            f"{cls.__name__}.__init__ takes (+{key}.kwargs.NAME=VALUE)"
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
