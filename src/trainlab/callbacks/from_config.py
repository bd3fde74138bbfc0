"""The `callbacks` entry of the config made into Lightning callbacks.

Each entry is a `_target_` with its keyword arguments (a Lightning callback class, yours or
Lightning's, or a function that builds one): `+callbacks.swa._target_=lightning.pytorch.callbacks.
StochasticWeightAveraging +callbacks.swa.swa_lrs=0.01`. A target whose signature takes `fit` is
given the run's FitContext (the checked settings, the run, the data ...): that is how trainlab's
own callbacks read `guard.*`, `checkpoint.*` and the others, which stay where users set them. A
target may return one callback, a list of them, or None (not needed for this run: an untracked run
has no rows to record), so a part that is off costs nothing at each step.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import lightning as L
from hydra.utils import get_method, instantiate

from trainlab.errors import ConfigError, one_line

if TYPE_CHECKING:
    from trainlab.engines.base import FitContext


OWN = "trainlab."  # callbacks of this package (schema.trainlab_callbacks)


def build_callbacks(entries: Mapping[str, Any], fit: FitContext) -> list[L.Callback]:
    """Every entry's callbacks, in the entries' order (trainlab's own first, as listed)."""
    callbacks: list[L.Callback] = []
    for name, entry in entries.items():
        if entry is None:  # `callbacks.console=null` turns one off
            continue
        built = build_one(name, entry, fit)
        for callback in built if isinstance(built, list | tuple) else [built]:
            if callback is None:
                continue
            if not isinstance(callback, L.Callback):
                raise ConfigError(
                    f"callbacks.{name}: {entry.get('_target_')} made a {type(callback).__name__}; "
                    "expected a Lightning Callback (lightning.pytorch.Callback)"
                )
            callbacks.append(callback)
    return callbacks


def build_one(name: str, entry: Any, fit: FitContext) -> Any:
    if not isinstance(entry, Mapping) or not entry.get("_target_"):
        raise ConfigError(
            f"callbacks.{name}={entry!r} is not allowed: expected a _target_ naming a Lightning "
            f"callback class and its arguments (+callbacks.{name}._target_=package.Class)"
        )
    try:
        target = entry["_target_"]
        if set(entry) == {"_target_"} and target.startswith(OWN):
            # trainlab's own, without arguments: nothing for instantiate to build, and its
            # OmegaConf copies of each entry cost more than building the callback
            made = get_method(target)
            return made(fit=fit) if "fit" in inspect.signature(made).parameters else made()
        partial = instantiate(dict(entry), _partial_=True, _convert_="all")
        takes_fit = "fit" in inspect.signature(partial.func).parameters
        return partial(fit=fit) if takes_fit else partial()
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"callbacks.{name}: {one_line(err)}") from None
