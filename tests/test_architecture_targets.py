"""The layers see the strings that connect them: a `_target_` is an import, made at run time.

A config names classes as text (`_target_: trainlab.data.sources.CsvSource`, the `callbacks`
entries, Hydra's own callbacks), which no import statement shows. The rule (ARCHITECTURE.md,
"Config strings are imports too"): a config group's `_target_` counts as an import by the layer
that instantiates that group, so it may name a class of that layer or a lower one. The strings
are read from the schemas' defaults (config/), the option files (conf/) and the presets
(experiments/); every one of them must also resolve, so a class that moved or was renamed fails
here rather than in a user's run.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra.utils import get_object
from omegaconf import OmegaConf

from tests.test_architecture import LAYERS, MODULES, PACKAGE, is_module, layer
from trainlab.config.legacy import RENAMED_DEFAULTS
from trainlab.config.schema import SCHEMAS, TrainConfig

REPO = Path(__file__).parent.parent
CONF, EXPERIMENTS = REPO / "conf", REPO / "experiments"

# Which module instantiates each config group: the layer a group's `_target_` is judged by.
INSTANTIATED_BY = {
    "data": "trainlab.data.sources",  # load_dataset
    "model": "trainlab.models.build",  # build_module
    "loss": "trainlab.models.build",
    "optimizer": "trainlab.models.build",
    "scheduler": "trainlab.models.build",
    "trainer": "trainlab.engines.lightning",  # build_trainer
    "callbacks": "trainlab.callbacks.from_config",  # build_callbacks, called by the engine
    "engine": "trainlab.pipeline",  # run
    "hydra": "trainlab.cli",  # Hydra's callbacks and launcher, built by Hydra inside the entry
}

# Climbs the test sees and allows until they are moved; each must still be found and still
# climb, so an entry cannot outlive its reason.
# None now: the last one, `callbacks.trial` naming sweeps/ (layer 7), moved down to
# callbacks/study_reports.py, which the pipeline hands the trial it opened (FitContext.trial).
KNOWN_CLIMBS: set[tuple[str, str]] = set()

# Strings that runs recorded by older versions hold in their config/resolved.yaml: they are read
# again by resume, rerun, fork, predict and compare, so they must keep resolving, although no
# current config names them.
LEGACY_TARGETS = {
    # Runs recorded before the package layers: their config/resolved.yaml names the model
    # there, and a model they logged as a pickle (`--trust-pickle`) its LightningModule
    # (trainlab/module.py re-exports both).
    "trainlab.module.LinearRegression": "trainlab.models.linear.LinearRegression",
    "trainlab.module.RegressionModule": "trainlab.models.lightning_module.RegressionModule",
    # Renamed defaults, read as today's when a recorded config is read (config/legacy.py).
    **RENAMED_DEFAULTS,
}

# A trainlab class (or a builder on one) named as text: a component that starts upper-case.
CLASS_PATH = re.compile(r"^trainlab(\.\w+)*\.[A-Z]\w*(\.\w+)*$")


def owning_module(path: str) -> str:
    """The module a dotted class path lives in: its longest prefix that is a module."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        if is_module(".".join(parts[:end])):
            return ".".join(parts[:end])
    raise AssertionError(f"{path}: no module of trainlab holds it")


def targets_in(node: Any, group: str) -> Iterator[tuple[str, str]]:
    """(group, class path) for every `_target_` in a plain config tree, and every other string
    that names a trainlab class."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_" and isinstance(value, str):
                yield group, value
            else:
                yield from targets_in(value, group)
    elif isinstance(node, list):
        for value in node:
            yield from targets_in(value, group)
    elif isinstance(node, str) and CLASS_PATH.match(node):
        yield group, node


def schema_targets() -> set[tuple[str, str]]:
    """The strings every schema's defaults hold, by the group they are read in."""
    found: set[tuple[str, str]] = set()
    whole = OmegaConf.to_container(OmegaConf.structured(TrainConfig), resolve=False)
    for group, value in whole.items():
        found |= set(targets_in(value, group))
    for group, options in SCHEMAS.items():
        for schema in options.values():
            tree = OmegaConf.to_container(OmegaConf.structured(schema), resolve=False)
            found |= set(targets_in(tree, group))
    return found


def yaml_targets() -> set[tuple[str, str]]:
    """The strings of conf/ and experiments/: an option file `conf/<group>/...` is read in its
    group; a file of the global package (train.yaml, the presets) by its top-level keys."""
    found: set[tuple[str, str]] = set()
    files = [p for p in CONF.rglob("*.yaml") if "experiment" not in p.relative_to(CONF).parts]
    for path in [*files, *EXPERIMENTS.rglob("*.yaml")]:
        text = path.read_text()
        tree = yaml.safe_load(text) or {}
        relative = path.relative_to(REPO).parts
        if relative[0] == "conf" and len(relative) > 2 and "@package _global_" not in text:
            found |= {(g, t) for g, t in targets_in(tree, relative[1])}
        else:
            for group, value in tree.items():
                found |= set(targets_in(value, group))
    return found


def strings_of_config_modules() -> dict[str, set[str]]:
    """What config/*.py names as text: `_target_` values and any trainlab class path."""
    named: dict[str, set[str]] = {}
    for path in sorted((PACKAGE / "config").glob("*.py")):
        strings = named.setdefault(path.name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "_target_":
                strings.add(getattr(node.value, "value", None))
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if getattr(key, "value", None) == "_target_":
                        strings.add(getattr(value, "value", None))
            elif isinstance(node, ast.Constant) and CLASS_PATH.match(str(node.value)):
                strings.add(node.value)
        strings.discard(None)  # `_target_ = MISSING`, or None: a scheduler that is off
    return named


TARGETS = sorted(schema_targets() | yaml_targets())
CONFIG_STRINGS = strings_of_config_modules()
OWN = [(group, target) for group, target in TARGETS if target.startswith("trainlab.")]


def test_the_strings_are_found():
    """The scan sees what it is for: the schemas' sources, engines and callbacks, and Hydra's."""
    assert ("data", "trainlab.data.sources.CsvSource") in TARGETS
    assert ("engine", "trainlab.engines.lightning.LightningEngine") in TARGETS
    assert ("callbacks", "trainlab.callbacks.StepRows.for_run") in TARGETS
    assert ("hydra", "trainlab.sweeps.callback.SweepCallback") in TARGETS


@pytest.mark.parametrize(("group", "target"), OWN, ids=[f"{g}:{t}" for g, t in OWN])
def test_a_config_names_no_class_above_the_layer_that_builds_it(group, target):
    assert group in INSTANTIATED_BY, (
        f"config group {group!r} names {target}: add the module that instantiates it to "
        "INSTANTIATED_BY in tests/test_architecture_targets.py"
    )
    builder, named = INSTANTIATED_BY[group], owning_module(target)
    if (group, target) in KNOWN_CLIMBS:
        assert layer(named) > layer(builder), f"{group}: {target} no longer climbs: unlist it"
        return
    assert layer(named) <= layer(builder), (
        f"{group}._target_={target} (layer {layer(named)}) is built by {builder} "
        f"(layer {layer(builder)}): a config may name only classes of the layer that builds it "
        "or lower ones"
    )


def test_every_known_climb_is_still_there():
    for climb in KNOWN_CLIMBS:
        assert climb in TARGETS, f"{climb} is no longer in any config: unlist it"


@pytest.mark.parametrize("target", sorted({t for _, t in TARGETS} | set(LEGACY_TARGETS)))
def test_every_target_resolves(target):
    if target.startswith("${"):  # an interpolation, resolved where the config is composed
        return
    assert get_object(target) is not None, target


def test_the_legacy_names_are_what_their_runs_meant():
    for old, new in LEGACY_TARGETS.items():
        # `==`: a builder (`Class.for_run`) is a new bound method at each lookup
        assert get_object(old) == get_object(new), f"{old} no longer means {new}"
        assert old not in {t for _, t in TARGETS}, f"a current config names {old}; expected {new}"


@pytest.mark.parametrize("module", sorted(CONFIG_STRINGS))
def test_every_class_path_of_a_schema_is_judged(module):
    """A class path written in config/*.py that is no group's default would escape the checks
    above: each must be one the schemas' defaults hold."""
    judged = {t for _, t in TARGETS} | set(LEGACY_TARGETS)
    unjudged = sorted(s for s in CONFIG_STRINGS[module] if s not in judged)
    assert not unjudged, f"config/{module} names {unjudged} outside any group's defaults"


def test_every_builder_is_in_a_layer():
    for group, builder in INSTANTIATED_BY.items():
        assert is_module(builder), f"INSTANTIATED_BY[{group!r}] = {builder}: no such module"
        assert any(builder == p or builder.startswith(p + ".") for p in LAYERS), builder
        if group == "hydra":  # Hydra instantiates its own callbacks and launcher
            continue
        source = MODULES[builder].read_text()
        makes = ("instantiate(", "construct(", "get_class(", "get_method(", "get_object(")
        assert any(call in source for call in makes), f"{builder} instantiates no {group}"
