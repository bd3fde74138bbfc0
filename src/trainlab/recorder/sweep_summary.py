"""What a sweep's parent says about its children: the best (by the mean of its replicates when
there are some), the pruned and failed ones apart, each configuration's spread, the Pareto front
of an Optuna search with several objectives (from its results in the sweep's folder)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from trainlab.recorder import sweep_plots
from trainlab.recorder.sweep_children import (
    SEED,
    Child,
    Configuration,
    configurations,
    replicate_table,
    to_csv,
    to_markdown,
)


class Summary:
    def __init__(self, children: list[Child], keys: list[str], results: dict[str, Any]) -> None:
        """Replicates: a seed among the swept keys (sweep.replicates on a grid, or seeds swept by
        hand), or a search's own (its results say how many)."""
        if int(results.get("replicates", 1)) > 1 and SEED not in keys:
            keys = [*keys, SEED]
        self.children, self.keys, self.results = children, keys, results
        self.done = [c for c in children if c.finished]
        self.pruned = [c for c in children if c.pruned]
        self.failed = [c for c in children if c.failed]
        named = next((c for c in children if c.objective), None)  # sweep.objective of a grid
        default = {"name": named.objective, "direction": named.direction} if named else None
        objectives = results.get("objectives") or [
            default or {"name": "loss", "direction": "minimize"}
        ]
        self.objectives = [str(o["name"]) for o in objectives]
        self.sign = -1.0 if objectives[0]["direction"] == "maximize" else 1.0
        self.groups: list[Configuration] = configurations(children, keys) if SEED in keys else []
        complete = [g for g in self.groups if g.complete]
        self.best_group = min(complete, key=lambda g: self.sign * g.mean) if complete else None
        candidates = self.best_group.children if self.best_group else self.done
        self.best = min(candidates, key=lambda c: self.sign * c.loss) if candidates else None
        self.front = results.get("solutions") or []
        self.bands: dict[int, tuple[list[int], list[float], list[float]]] = {}

    def pareto_children(self) -> list[Child]:
        jobs = {job for solution in self.front for job in solution.get("jobs", [])}
        return [c for c in self.children if c.job in jobs]

    def write(
        self, folder: Path, curve: sweep_plots.Curve, objective: sweep_plots.Curve
    ) -> list[str]:
        """The tables and plots beside children.csv/.md; their names under summary/. `objective`:
        a child's objective at every report (val/loss per epoch, else train/loss)."""
        sweep_plots.losses(self.children, self.keys, curve).savefig(folder / "losses.png", dpi=100)
        files = ["summary/losses.png"]
        if self.groups:
            rows = replicate_table(self.groups)
            (folder / "replicates.csv").write_text(to_csv(rows))
            (folder / "replicates.md").write_text(to_markdown(rows))
            figure = sweep_plots.replicates(self.groups, self.keys)
            figure.savefig(folder / "replicates.png", dpi=100)
            files += ["summary/replicates.md", "summary/replicates.png"]
            self.bands = {g.number: replicate_band(g, objective) for g in self.groups}
            self.bands = {n: band for n, band in self.bands.items() if band[0]}
            if self.bands:
                figure = sweep_plots.bands(self.bands, self.groups)
                figure.savefig(folder / "replicate_curves.png", dpi=100)
                files.append("summary/replicate_curves.png")
        importances = self.results.get("importances") or {}
        if importances:
            rows = [{"param": k, "importance": v} for k, v in importances.items()]
            (folder / "importances.csv").write_text(to_csv(rows))
            (folder / "importances.md").write_text(to_markdown(rows))
            sweep_plots.importances(importances).savefig(folder / "importances.png", dpi=100)
            files += ["summary/importances.md", "summary/importances.png"]
        if self.front and len(self.objectives) > 1:
            (folder / "pareto.csv").write_text(to_csv(self.pareto_rows()))
            (folder / "pareto.md").write_text(to_markdown(self.pareto_rows()))
            done = [t["values"] for t in self.results.get("trials", []) if t["state"] == "COMPLETE"]
            front = [s["values"] for s in self.front]
            sweep_plots.pareto(self.objectives, done, front).savefig(folder / "pareto.png", dpi=100)
            files += ["summary/pareto.md", "summary/pareto.png"]
        return files

    def pareto_rows(self) -> list[dict[str, Any]]:
        runs = {c.job: c.run_id for c in self.children}
        return [
            {
                "trial": s["trial"],
                **{k: str(v) for k, v in s["params"].items()},
                **dict(zip(self.objectives, s["values"], strict=True)),
                "jobs": " ".join(str(j) for j in s["jobs"]),
                "run_ids": " ".join(runs.get(j, "?") for j in s["jobs"]),
            }
            for s in self.front
        ]

    def lines(self, children_md: str) -> list[str]:
        """The summary as printed at the end and shown as the parent's description."""
        counts = f"{len(self.done)} of {len(self.children)} children finished"
        if self.pruned:
            counts += f", {len(self.pruned)} pruned"
        if self.failed:
            counts += f", {len(self.failed)} failed"
        lines = [f"Sweep summary ({counts}):", children_md.rstrip("\n")]
        if self.pruned:
            each = ", ".join(f"job {c.job} at {c.pruned}" for c in self.pruned)
            lines.append(f"Pruned (stopped by the study's pruner, not failed): {each}")
        if self.failed:
            lines.append("Failed: " + ", ".join(f"job {c.job} ({c.status})" for c in self.failed))
        if self.groups:
            spread = to_markdown(replicate_table(self.groups)).rstrip("\n")
            lines.append(f"Replicates (final loss per configuration):\n{spread}")
        if self.best_group is not None and self.best is not None:
            values = " ".join(f"{k}={v}" for k, v in self.best_group.values.items())
            lines.append(
                f"Best: configuration {self.best_group.number} ({values}), mean final loss "
                f"{self.best_group.mean:.6g} ± {self.best_group.std:.3g} over "
                f"{len(self.best_group.children)} replicates; its best run: job {self.best.job}, "
                f"run {self.best.run_id}"
            )
        elif self.best is not None:
            lines.append(
                f"Best: job {self.best.job} ({self.best.run_name}), final loss "
                f"{self.best.loss:.6g}, run {self.best.run_id}"
            )
        if self.front and len(self.objectives) > 1:
            table = to_markdown(self.pareto_rows()).rstrip("\n")
            lines.append(f"Pareto front ({', '.join(self.objectives)}):\n{table}")
        return lines

    def tags(self) -> dict[str, str]:
        tags: dict[str, str] = {}
        if self.best is not None:
            tags = {
                "trainlab.sweep.best_run_id": self.best.run_id,
                "trainlab.sweep.best_run_name": self.best.run_name,
                "trainlab.sweep.best_job": str(self.best.job),
            }
            values = self.best_group.values if self.best_group else self.best.overrides
            tags.update({f"best.{k}": values.get(k, "") for k in self.keys if k in values})
        if self.pruned:
            tags["trainlab.sweep.pruned_jobs"] = " ".join(str(c.job) for c in self.pruned)
        if self.front and len(self.objectives) > 1:
            tags["trainlab.sweep.pareto_jobs"] = " ".join(
                str(c.job) for c in self.pareto_children()
            )
        return tags

    def metrics(self) -> dict[str, float]:
        metrics = {
            "sweep/children": len(self.children),
            "sweep/finished": len(self.done),
            "sweep/pruned": len(self.pruned),
            "sweep/failed": len(self.failed),
        }
        if self.best is not None:
            metrics["best/final_loss"] = self.best.loss
        if self.best_group is not None:
            metrics["best/mean_loss"] = self.best_group.mean
            metrics["best/std_loss"] = self.best_group.std
        if self.front:
            metrics["sweep/pareto_trials"] = len(self.front)
        return metrics

    def series(self) -> list[tuple[str, float, int]]:
        """Per configuration (the step is its number in summary/replicates.md): mean and spread."""
        rows: list[tuple[str, float, int]] = []
        for group in self.groups:
            if group.losses:
                rows.append(("replicates/mean_loss", group.mean, group.number))
                rows.append(("replicates/std_loss", group.std, group.number))
        # ... and at every step its replicates all reached: the objective's mean and spread.
        for number, (steps, means, stds) in self.bands.items():
            for step, mean, std in zip(steps, means, stds, strict=True):
                rows.append((f"replicates/config_{number}/mean", mean, step))
                rows.append((f"replicates/config_{number}/std", std, step))
        return rows


def replicate_band(
    group: Configuration, objective: sweep_plots.Curve
) -> tuple[list[int], list[float], list[float]]:
    """A configuration's objective at every step its finished replicates all recorded: steps,
    means, standard deviations (empty with fewer than two replicates)."""
    curves = [dict(zip(*objective(c.run_id), strict=True)) for c in group.children if c.finished]
    if len(curves) < 2:
        return [], [], []
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    means = [statistics.fmean(c[s] for c in curves) for s in steps]
    stds = [statistics.stdev([c[s] for c in curves]) for s in steps]
    return steps, means, stds
