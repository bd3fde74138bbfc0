"""Checkpoints loaded as data: a module's hyper-parameters may hold objects (a network, an
optimizer partial, a scheduler: lightning-hydra-template's `save_hyperparameters` pattern), which
`torch.load(weights_only=True)` refuses to rebuild, and which a plain `torch.load` would rebuild
by running whatever code the file names.

trainlab allows exactly what the run's own recorded config names: every `_target_` and `target`
class in it (the user's LightningModule, its network, `torch.optim.Adam` behind a `_partial_`),
`functools.partial` and Hydra's subclass of it (how `_partial_: true` hands over a partial), torch's own layers (`torch.nn.modules`),
and the nn.Module classes of a module the config names (a network's own blocks). Anything else a
checkpoint would rebuild is refused with one line that names it. The run's config comes from the
run's own store (resume, rerun, fork), so a checkpoint can only rebuild classes its run trained.

Reading a checkpoint's bookkeeping (its step, its run id, its loaders' positions) runs no code
at all: every class it names is read as an inert stand-in (`read_metadata`).
"""

from __future__ import annotations

import functools
import importlib
import pickle
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_object, instantiate
from torch import nn

from trainlab.errors import ConfigError
from trainlab.user_classes import quiet_logger

TORCH_LAYERS = "torch.nn.modules."
# Modules whose globals torch refuses even as stand-ins: what a crafted pickle reaches for.
BLOCKED_MODULES = ("os", "posix", "nt", "subprocess", "sys", "builtins", "shutil", "socket")


class Inert:
    """What every class a checkpoint names becomes while its bookkeeping is read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def needed_classes(path: Path) -> list[str]:
    """The globals beyond plain data that the checkpoint would rebuild (torch's own list)."""
    return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))


def read_metadata(path: Path) -> dict[str, Any]:
    """The checkpoint as plain data, its objects inert: for its step, run id and loop state.
    One that names what torch never loads as data (os.system ...) is refused in one line."""
    needed = needed_classes(path)
    with torch.serialization.safe_globals([(Inert, name) for name in needed]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            blocked = [name for name in needed if name.split(".", 1)[0] in BLOCKED_MODULES]
            if not blocked:
                raise
            raise ConfigError(refusal("resume", path, blocked[0])) from None


def refusal(what: str, path: Path, name: str) -> str:
    return (
        f"{what}: checkpoint {path} would have to run the class {name}, which the run's "
        "recorded config does not name; expected a checkpoint of this run (it loads only the "
        "classes its config names and torch's own layers)"
    )


def named_in(config: Mapping[str, Any]) -> list[str]:
    """Every class path the config names (`_target_` and `target` values, at any depth)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in ("_target_", "target") and isinstance(value, str) and "." in value:
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list | tuple):
            for value in node:
                walk(value)

    walk(config)
    return found


@functools.cache
def hydra_partial() -> type:
    """The class of what `_partial_: true` makes (Hydra wraps functools.partial in a subclass
    of its own that checks its target when called), found through Hydra's public API."""
    return type(instantiate({"_target_": "collections.OrderedDict", "_partial_": True}))


def allowed_objects(config: Mapping[str, Any]) -> dict[str, Any]:
    """{module.qualname: object} for what the config names, as pickle spells the names."""
    allowed: dict[str, Any] = {"functools.partial": functools.partial}
    partial = hydra_partial()
    allowed[f"{partial.__module__}.{partial.__qualname__}"] = partial
    for path in named_in(config):
        try:
            with quiet_logger("hydra.utils"):
                obj = get_object(path)
        except Exception:  # a name that does not import cannot be in a checkpoint it loads
            continue
        if hasattr(obj, "__module__") and hasattr(obj, "__qualname__"):
            allowed[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return allowed


def resolve(name: str, allowed: dict[str, Any]) -> Any | None:
    """The object for a checkpoint's global name when the config allows it, else None."""
    if name in allowed:
        return allowed[name]
    module_name, _, attribute = name.rpartition(".")
    modules = {getattr(obj, "__module__", None) for obj in allowed.values()}
    if not (name.startswith(TORCH_LAYERS) or module_name in modules):
        return None
    obj = getattr(importlib.import_module(module_name), attribute, None)
    return obj if isinstance(obj, type) and issubclass(obj, nn.Module) else None


def trusted_globals(path: Path, config: Mapping[str, Any], what: str) -> list[Any]:
    """The classes the checkpoint needs, each allowed by the run's config; one line naming the
    first that is not (`what`: how the checkpoint was given, for the line)."""
    allowed = allowed_objects(config)
    objects = []
    for name in needed_classes(path):
        obj = resolve(name, allowed)
        if obj is None:
            raise ConfigError(refusal(what, path, name))
        objects.append(obj)
    return objects


@contextmanager
def trusted_loading(path: Path | None, config: Mapping[str, Any], what: str) -> Iterator[None]:
    """Inside: `torch.load(weights_only=True)` of the checkpoint rebuilds what its run's config
    allows (Lightning's restore in `trainer.fit(ckpt_path=...)` loads it so)."""
    if path is None:
        yield
        return
    with torch.serialization.safe_globals(trusted_globals(path, config, what)):
        yield
