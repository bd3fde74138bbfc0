"""config/construct.py: the direct call builds what Hydra's instantiate builds, and every case
it does not cover (nested targets, interpolations, Hydra's own keys, a failing call) is Hydra's."""

from __future__ import annotations

import functools

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from trainlab.config.construct import construct, plain_fields
from trainlab.config.data import SyntheticDataConfig
from trainlab.config.training import AdamConfig, MSELossConfig, StepLRConfig


def test_plain_entries_are_built_as_instantiate_builds_them() -> None:
    layer = {"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2, "bias": False}
    ours, hydras = construct(layer), instantiate(layer, _convert_="all")
    assert type(ours) is type(hydras) is torch.nn.Linear
    assert ours.weight.shape == hydras.weight.shape and ours.bias is hydras.bias is None
    loss = construct(MSELossConfig())
    assert isinstance(loss, torch.nn.MSELoss)


def test_partial_entries_bind_their_values() -> None:
    config = AdamConfig(lr=0.05)
    ours, hydras = construct(config), instantiate(config, _convert_="all")
    assert isinstance(ours, functools.partial) and ours.func is hydras.func
    assert ours.keywords == hydras.keywords
    optimizer = ours([torch.nn.Parameter(torch.zeros(1))])
    assert optimizer.param_groups[0]["lr"] == 0.05
    scheduler = construct(StepLRConfig(step_size=3))
    assert scheduler.keywords == {"step_size": 3, "gamma": 0.1}


def test_keyword_arguments_win_and_lists_are_copies() -> None:
    shape = [4, 5]
    config = {"_target_": "builtins.dict", "shape": shape, "name": "a"}
    made = construct(config, name="b")
    assert made == instantiate(config, _convert_="all", name="b") == {"shape": [4, 5], "name": "b"}
    made["shape"].append(6)
    assert shape == [4, 5]  # the config's list is not the object's


@pytest.mark.parametrize(
    "config",
    [
        {"_target_": "builtins.dict", "inner": {"_target_": "builtins.list"}},  # nested target
        {"_target_": "builtins.dict", "path": "${oc.env:HOME}"},  # an interpolation
        {"_target_": "builtins.dict", "_args_": [[("a", 1)]]},  # Hydra's own key
        {"_target_": "builtins.dict", "_recursive_": False, "x": 1},
        {"_target_": "builtins.dict", "values": (1, 2)},  # a tuple: OmegaConf makes it a list
    ],
)
def test_what_is_not_plain_goes_to_hydra(config: dict) -> None:
    assert plain_fields(config) is None
    assert construct(config) == instantiate(config, _convert_="all")


def test_dataclass_configs_are_read_field_by_field() -> None:
    fields = plain_fields(SyntheticDataConfig())
    assert fields is not None and fields["_target_"] == SyntheticDataConfig._target_


def test_a_failing_call_raises_hydras_error() -> None:
    config = {"_target_": "torch.nn.Linear", "in_features": 3}  # out_features missing
    with pytest.raises(InstantiationException, match="out_features"):
        construct(config)
    with pytest.raises(InstantiationException):
        construct({"_target_": "no.such.module.Thing"})
