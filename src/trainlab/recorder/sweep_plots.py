"""The pictures on a sweep's parent run: every child's final loss and train/loss curve; with
replicates, each configuration's mean and standard deviation; with several objectives, every
trial's values and the Pareto front."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from matplotlib.figure import Figure

from trainlab.recorder.sweep_children import Child, Configuration

Curve = Callable[[str], tuple[list[int], list[float]]]  # run id -> its train/loss history


def losses(children: list[Child], keys: list[str], curve: Curve) -> Figure:
    """Final loss against the swept value (one numeric key) or per job; every train/loss curve."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    done = [c for c in children if c.finished]
    numeric = len(keys) == 1 and all(_is_number(c.overrides.get(keys[0])) for c in done)
    if numeric and done:
        points = sorted((float(c.overrides[keys[0]]), c.loss) for c in done)
        left.plot(*zip(*points, strict=True), marker="o")
        left.set_xlabel(keys[0])
        _log_x_when_wide(left, [x for x, _ in points])
    else:
        left.bar(range(len(done)), [c.loss for c in done])
        left.set_xticks(range(len(done)), [str(c.job) for c in done])
        left.set_xlabel("job (see summary table)")
    left.set_ylabel("final loss")
    left.set_title("final loss per child (failed and pruned children left out)")
    for child in children:
        steps, values = curve(child.run_id)
        if steps:
            style = ":" if child.pruned else "-"
            right.plot(
                steps, values, style, label=child.run_name + (" (pruned)" * bool(child.pruned))
            )
    right.set_xlabel("step")
    right.set_ylabel("train/loss")
    right.set_title("train/loss of every child (dotted: pruned)")
    if all(c.loss > 0 for c in done) and done:
        left.set_yscale("log")
        right.set_yscale("log")
    if 0 < len(right.get_lines()) <= 12:
        right.legend(fontsize="small")
    return fig


def replicates(groups: list[Configuration], keys: list[str]) -> Figure:
    """Each configuration's mean final loss with its standard deviation as an error bar."""
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    axes = fig.subplots()
    shown = [g for g in groups if g.losses]
    keys = [k for k in keys if k in (shown[0].values if shown else {})]
    numeric = len(keys) == 1 and all(_is_number(g.values[keys[0]]) for g in shown)
    xs: list[Any] = (
        [float(g.values[keys[0]]) for g in shown] if numeric else [g.number for g in shown]
    )
    axes.errorbar(xs, [g.mean for g in shown], yerr=[g.std for g in shown], fmt="o", capsize=4)
    if numeric:
        axes.set_xlabel(keys[0])
        _log_x_when_wide(axes, xs)
    else:
        axes.set_xticks(xs, [str(x) for x in xs])
        axes.set_xlabel("configuration (see summary/replicates.md)")
    axes.set_ylabel("final loss: mean ± standard deviation")
    axes.set_title("replicates of each configuration (finished runs)")
    return fig


def pareto(names: list[str], points: list[list[float]], front: list[list[float]]) -> Figure:
    """Every finished trial by its first two objectives, the Pareto front marked."""
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    axes = fig.subplots()
    if points:
        axes.scatter([p[0] for p in points], [p[1] for p in points], label="trials", alpha=0.6)
    if front:
        line = sorted(front)
        axes.plot(
            [p[0] for p in line], [p[1] for p in line], "o-", color="C3", label="Pareto front"
        )
    axes.set_xlabel(names[0])
    axes.set_ylabel(names[1])
    axes.set_title("trials by their objectives")
    axes.legend(fontsize="small")
    return fig


def _log_x_when_wide(axes: Any, xs: list[float]) -> None:
    if xs and all(x > 0 for x in xs) and max(xs) / min(xs) >= 10:
        axes.set_xscale("log")


def _is_number(text: str | None) -> bool:
    try:
        float(text or "")
    except ValueError:
        return False
    return True


def importances(values: dict[str, float]) -> Figure:
    """Optuna's parameter importances of a search, the most important first."""
    fig = Figure(figsize=(7, 1.2 + 0.5 * len(values)), layout="constrained")
    axes = fig.subplots()
    names = list(values)[::-1]
    axes.barh(names, [values[n] for n in names])
    axes.set_xlabel("importance (Optuna's fANOVA; they sum to 1)")
    axes.set_title("what the objective depends on, over the completed trials")
    return fig


def bands(
    curves: dict[int, tuple[list[int], list[float], list[float]]], groups: list[Configuration]
) -> Figure:
    """Each configuration's objective over its steps: the replicates' mean, ± one standard
    deviation shaded."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    axes = fig.subplots()
    # A configuration that differs from the others only by its seeds has no values to name.
    names = {
        g.number: " ".join(f"{k}={v}" for k, v in g.values.items()) or f"configuration {g.number}"
        for g in groups
    }
    for number, (steps, means, stds) in curves.items():
        line = axes.plot(steps, means, label=names.get(number, str(number)))[0]
        low = [m - s for m, s in zip(means, stds, strict=True)]
        high = [m + s for m, s in zip(means, stds, strict=True)]
        axes.fill_between(steps, low, high, color=line.get_color(), alpha=0.25)
    axes.set_xlabel("step")
    axes.set_ylabel("objective: mean ± standard deviation")
    axes.set_yscale("log")
    axes.set_title("replicates of each configuration, at every step they all reached")
    if 0 < len(curves) <= 12:  # a legend of nothing warns
        axes.legend(fontsize="small")
    return fig
