"""A trained model as bytes for the trainer's own recorder process: its classes pickled by value.

Only the hand-over from the trainer to the recorder it started (the same user, the same job)
travels this way; what is logged is torch.export's program, which runs no code when loaded
(recorder/model.py). A model's classes may live where the recorder cannot import them: a user's
package on the trainer's PYTHONPATH only, a class defined in a notebook or script (`__main__`).
cloudpickle writes those classes into the bytes themselves; torch's and Lightning's are imported
by name, as they are everywhere.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

import cloudpickle

if TYPE_CHECKING:  # the recorder imports this at its start, before it imports torch
    from torch import nn

LIBRARIES = ("torch", "lightning", "pytorch_lightning", "builtins")


def own_modules(model: nn.Module) -> list[str]:
    """The Python modules of the classes a model is made of, other than the libraries'."""
    names = {type(part).__module__ for part in model.modules()}
    return sorted(n for n in names if n.split(".")[0] not in LIBRARIES)


def to_bytes(model: nn.Module) -> bytes:
    for name in own_modules(model):
        module = sys.modules.get(name) or importlib.import_module(name)
        if name != "__main__":  # cloudpickle pickles __main__'s classes by value already
            cloudpickle.register_pickle_by_value(module)
    return cloudpickle.dumps(model)


def from_bytes(data: bytes) -> nn.Module:
    return cloudpickle.loads(data)
