"""`construct`: Hydra's `instantiate(config, _convert_="all", **kwargs)` for a part of the config,
with its commonest case called directly.

Every run builds its datamodule, model, loss, optimizer, scheduler and engine from `_target_`
entries. Hydra's instantiate first makes the whole entry an OmegaConf object (a structured
config for a dataclass) and walks it for nested targets: that was a third of what an untracked
seed run spends outside its steps (docs/performance.md, P2). An entry whose values are plain
(numbers, strings, lists and dicts of them: no nested `_target_`, no `${...}`, none of `_args_`,
`_recursive_`, `_convert_`) builds the same object when its target is called with them, with
`_partial_` giving a `functools.partial`, which is what this does. Anything else, and any
failure of the direct call (so that the error reads as Hydra's), goes through instantiate.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Any

from hydra.utils import get_object, instantiate

DIRECT_ONLY_WITHOUT = ("_args_", "_recursive_", "_convert_")


def construct(config: Any, /, **kwargs: Any) -> Any:
    """What `instantiate(config, _convert_="all", **kwargs)` makes (see the module docstring)."""
    fields = plain_fields(config)
    if fields is None or not isinstance(fields.get("_target_"), str):
        return instantiate(config, _convert_="all", **kwargs)
    target = fields.pop("_target_")
    partial = bool(fields.pop("_partial_", False))
    arguments = copy.deepcopy(fields) | kwargs  # the object may keep and change its lists
    try:
        made = get_object(target)
        return functools.partial(made, **arguments) if partial else made(**arguments)
    except Exception:
        return instantiate(config, _convert_="all", **kwargs)


def plain_fields(config: Any) -> dict[str, Any] | None:
    """The entry's keys and values when they are plain (see above), else None."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    elif type(config) is dict:
        fields = dict(config)
    else:
        return None  # an OmegaConf container: Hydra resolves it
    if any(key in fields for key in DIRECT_ONLY_WITHOUT):
        return None
    if not all(_plain(value) for value in fields.values()):
        return None
    return fields


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float):
        return True
    if isinstance(value, str):
        return "${" not in value
    if type(value) is list:  # a tuple: OmegaConf's rules make it a list
        return all(_plain(v) for v in value)
    if type(value) is dict:
        return "_target_" not in value and all(
            isinstance(k, str) and _plain(v) for k, v in value.items()
        )
    return False  # a dataclass, an OmegaConf node, an object: Hydra's rules apply
