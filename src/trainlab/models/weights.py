"""A trained model as weights and the config it is built from: the logged form of a model that
torch.export cannot export (recorder/model.py), loaded without unpickling anything but tensors.

The model's `data/` folder holds two files: `weights.pt`, the served module's state_dict (plain
tensors, read with `torch.load(weights_only=True)`: torch's own unpickler refuses any other
object before it is made), and `model.json`, what rebuilds the module: the run's `model` config
group (`_target_`: trainlab's own model, or `model.target`/`model.kwargs` of a user's nn.Module or
LightningModule), the shape arguments the data gave its constructor, what it is served as (behind
the standardization; a classifier's class probabilities) and a classifier's class names.

This module is the model's pyfunc `loader_module` (MLflow's documented custom-loader form:
`_load_pyfunc(data_path)`), so `mlflow.pyfunc.load_model` and `mlflow models serve` load it from
the installed trainlab, never from code inside the artifact; trainlab-predict and
trainlab-evaluate call `load_weights` themselves (commands/logged_model.py). A model.json is as
writable as the weights, so what it may name is checked before anything is built: every
`_target_` must be an nn.Module class (an optimizer or scheduler class where `_partial_` only
binds its arguments: a LightningModule's constructor takes them), or trainlab's builder of a
user's class (which itself takes only nn.Module subclasses); its arguments are JSON values.
"""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import get_object, instantiate
from torch import nn

from trainlab.errors import one_line
from trainlab.models.linear import ClassProbabilities, StandardizedModel
from trainlab.user_classes import quiet_logger, root_cause

WEIGHTS, SPEC = "weights.pt", "model.json"
FORMAT = "trainlab-weights/1"
REFUSAL = "WeightsUnpickler error:"  # where torch's weights_only loader says what it refused
STANDARDIZED, PROBABILITIES = "standardized", "probabilities"
# Callables of trainlab's own that build a model from the config (model=custom's builder).
BUILDERS = ("trainlab.models.user_model.custom_model",)


class UnsafeWeights(ValueError):
    """The model's files are not weights and a config trainlab can rebuild; the message is the
    one line said."""


def served_as(module: nn.Module) -> tuple[list[str], nn.Module]:
    """What a served module wraps around the network the config builds, outermost first."""
    layers: list[str] = []
    while isinstance(module, StandardizedModel | ClassProbabilities):
        layers.append(STANDARDIZED if isinstance(module, StandardizedModel) else PROBABILITIES)
        module = module.model
    return layers, module


def save_weights(
    folder: Path, module: nn.Module, rebuild: dict[str, Any], classes: list[str]
) -> None:
    """`weights.pt` and `model.json` of the served `module`, into `folder` (created); `rebuild`
    is what the trainer said of it (run_handover.py): model, shapes, served_as."""
    folder.mkdir(parents=True)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}
    torch.save(state, folder / WEIGHTS)
    spec = {**rebuild, "format": FORMAT, "classes": classes}
    (folder / SPEC).write_text(json.dumps(spec, indent=2))


def read_spec(folder: Path) -> dict[str, Any]:
    """model.json, checked: its shape and every class it names (nothing is built yet)."""
    try:
        spec = json.loads((folder / SPEC).read_text())
    except (OSError, ValueError) as err:
        raise UnsafeWeights(f"its {SPEC} cannot be read ({one_line(err)})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise UnsafeWeights(f"its {SPEC} is not trainlab's ({FORMAT})")
    layers, shapes, classes = spec.get("served_as"), spec.get("shapes"), spec.get("classes")
    if not isinstance(layers, list) or not set(layers) <= {STANDARDIZED, PROBABILITIES}:
        raise UnsafeWeights(f"its {SPEC} wraps the model in {layers!r}")
    if not isinstance(shapes, dict) or not isinstance(classes, list):
        raise UnsafeWeights(f"its {SPEC} has no shapes or classes")
    if not isinstance(spec.get("model"), dict):
        raise UnsafeWeights(f"its {SPEC} names no model")
    check_targets(spec["model"], top=True)
    return spec


def check_targets(config: Any, top: bool = False) -> None:
    """Every `_target_` in the config names what a model may be built from (module docstring)."""
    if isinstance(config, list):
        for item in config:
            check_targets(item)
        return
    if not isinstance(config, dict):
        return
    target = config.get("_target_")
    if target is not None:
        allowed = buildable(target, partial=config.get("_partial_") is True, top=top)
        if not allowed:
            raise UnsafeWeights(
                f"its {SPEC} names {target!r}, which is not a model class; expected the "
                "torch.nn.Module (or trainlab model) the run was trained with"
            )
    for key, value in config.items():
        if key != "_target_":  # `_args_` and every argument, however deep
            check_targets(value)


def buildable(target: Any, partial: bool, top: bool) -> bool:
    if not isinstance(target, str):
        return False
    if top and target in BUILDERS:
        return True
    try:
        with quiet_logger("hydra.utils"):
            found = get_object(target)
    except Exception as err:
        raise UnsafeWeights(
            f"its model class {target!r} cannot be imported ({one_line(err)}); expected it on the "
            "Python path (PYTHONPATH: the folder that holds its package)"
        ) from None
    if not inspect.isclass(found):
        return False
    if issubclass(found, nn.Module):
        return True
    schedulers = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    return partial and issubclass(found, (torch.optim.Optimizer, *schedulers))


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """weights.pt through torch's weights_only unpickler: tensors and plain containers only."""
    try:
        with warnings.catch_warnings():  # torch warns of a pickle protocol it did not write
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    except Exception as err:
        # torch's message is a page; what follows REFUSAL names what it refused.
        text = str(err).split(REFUSAL)[-1]
        said = next((x.strip() for x in text.splitlines() if x.strip()), type(err).__name__)
        raise UnsafeWeights(
            f"its {WEIGHTS} is not plain tensors (torch's weights_only loader refused it: "
            f"{said.split('. ')[0][:160]}), so nothing of it was run"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise UnsafeWeights(f"its {WEIGHTS} is not a state_dict of tensors")
    return state


def build(spec: dict[str, Any], state: dict[str, torch.Tensor]) -> nn.Module:
    """The served module rebuilt from the checked spec, holding `state` (its dtypes too)."""
    shapes = dict(spec["shapes"])
    if isinstance(shapes.get("in_shape"), list):  # a tuple, as the trainer gave it
        shapes["in_shape"] = tuple(shapes["in_shape"])
    try:
        module = instantiate(spec["model"], _convert_="all", **shapes)
    except Exception as err:
        # Hydra's wrapper names its call; the cause says what was wrong (a class not importable).
        said = one_line(root_cause(err))
        raise UnsafeWeights(f"its model does not build from {SPEC} ({said})") from None
    if not isinstance(module, nn.Module):
        raise UnsafeWeights(f"its {SPEC} builds a {type(module).__name__}, not a torch module")
    layers = spec["served_as"]
    for depth in reversed(range(len(layers))):
        if layers[depth] == PROBABILITIES:
            module = ClassProbabilities(module)
        else:
            prefix = "model." * depth
            mean, std = state.get(f"{prefix}mean"), state.get(f"{prefix}std")
            if mean is None or std is None:
                raise UnsafeWeights(f"its {WEIGHTS} has no standardization")
            module = StandardizedModel(module, mean, std)
    try:
        # assign: the tensors themselves (a float64 run's weights stay float64).
        module.load_state_dict(state, strict=True, assign=True)
    except Exception as err:
        raise UnsafeWeights(f"its {WEIGHTS} does not fit its model ({one_line(err)})") from None
    return module.eval()


def load_weights(folder: Path) -> tuple[nn.Module, list[str]]:
    """The served module and a classifier's class names, from a model's `data/` folder."""
    spec = read_spec(folder)
    return build(spec, read_weights(folder)), [str(c) for c in spec["classes"]]


def answer(network: nn.Module, classes: list[str], rows: Any) -> Any:
    """The module's answer to raw inputs: its outputs, or a classifier's table (`label`, then one
    `probability_<class>` per class), as the pt2 forms answer."""
    x = torch.as_tensor(np.asarray(rows))
    parameter = next(network.parameters(), None)
    if x.is_floating_point() and parameter is not None:
        x = x.to(parameter.dtype)
    with torch.no_grad():
        output = network(x)
    if not classes:
        return output.numpy()
    import pandas as pd

    probabilities = output.double().numpy()
    table = {"label": [classes[i] for i in probabilities.argmax(axis=1)]}
    for k, name in enumerate(classes):
        table[f"probability_{name}"] = probabilities[:, k]
    return pd.DataFrame(table)


class WeightsModel:
    """What `mlflow.pyfunc.load_model` wraps: `predict(rows)` as MLflow calls it."""

    def __init__(self, network: nn.Module, classes: list[str]) -> None:
        self.network, self.classes = network, classes

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        return answer(self.network, self.classes, model_input)


def _load_pyfunc(data_path: str) -> WeightsModel:
    """MLflow's loader_module entry point (its name is MLflow's)."""
    return WeightsModel(*load_weights(Path(data_path)))
