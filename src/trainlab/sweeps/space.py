"""An Optuna sweep's search space, read from Hydra's override syntax as hydra-optuna-sweeper
read it: `choice(a, b)` and `range(...)` are categorical or stepped, `interval(lo, hi)` uniform,
`tag(log, interval(lo, hi))` log-uniform; a plain value is fixed for every trial."""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from trainlab.errors import ConfigError

EXAMPLE = "optimizer.lr=tag(log,interval(0.001,0.3))"


def search_space(arguments: list[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """The distributions of the swept keys and the values of the fixed ones; for the same key
    a later argument (the command line, after hydra.sweeper.params) wins."""
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed[key] = override.get_value_element_as_str()
    if not space:
        raise ConfigError(
            "hydra/sweeper=optuna: the search space is empty; expected a swept key in "
            f"hydra.sweeper.params or on the command line (e.g. {EXAMPLE})"
        )
    return space, fixed


def distribution(override: Override) -> BaseDistribution:
    key = override.get_key_element()
    if override.is_interval_sweep():
        ends = override.value()
        low, high, log = ends.start, ends.end, "log" in ends.tags
        if not low < high:
            raise ConfigError(
                f"{key}=interval({low}, {high}) is empty; expected interval(low, high) with low < high"
            )
        if log and low <= 0:
            raise ConfigError(
                f"{key}=tag(log, interval({low}, {high})): a log scale needs low > 0; expected "
                f"e.g. {EXAMPLE}"
            )
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log)
        return FloatDistribution(float(low), float(high), log=log)
    values = list(override.sweep_iterator(transformer=Transformer.encode))
    if not values:
        raise ConfigError(f"{override.input_line}: no values to choose from; expected at least one")
    if override.is_range_sweep() and not override.value().shuffle:
        numbers = [_number(v) for v in values]
        step = override.value().step
        if all(isinstance(n, int) for n in numbers) and isinstance(step, int) and len(values) > 1:
            return (
                IntDistribution(numbers[0], numbers[-1], step=abs(step))
                if step > 0
                else (CategoricalDistribution(values))
            )
    return CategoricalDistribution(values)


def grid_choices(space: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    """hydra/sweeper/sampler=grid: every value of each key (intervals have none to list)."""
    choices: dict[str, list[Any]] = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            choices[key] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            choices[key] = list(range(dist.low, dist.high + 1, dist.step))
        else:
            raise ConfigError(
                f"hydra/sweeper/sampler=grid: {key} is an interval, which has no grid; expected "
                f"choice(...) or range(...) for {key}"
            )
    return choices


def overrides_of(params: dict[str, Any], fixed: dict[str, str]) -> list[str]:
    """A trial's job overrides: its sampled values, then the fixed ones."""
    return [f"{key}={value}" for key, value in params.items()] + [
        f"{key}={value}" for key, value in fixed.items() if key not in params
    ]


def _number(text: Any) -> Any:
    try:
        return int(text)
    except (TypeError, ValueError):
        return text
