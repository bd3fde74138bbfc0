"""A sweep's children as its parent's summary reads them back from MLflow, and the tables made of
them: one row per job, one per configuration when the sweep has replicates.

A job has one child: when a continued sweep ran a job again (its first run was killed before any
checkpoint), its latest run is the job's. A child is finished (its objective counts), pruned
(stopped by the study's pruner: FINISHED, tag trainlab.sweep.pruned) or failed (anything else).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import Run

from trainlab.config.checks import override_key
from trainlab.tracking.messages import EndStatus
from trainlab.tracking.tags import (
    DIRECTION_TAG,
    ERROR_TAG,
    JOB_TAG,
    OBJECTIVE_TAG,
    OVERRIDES_TAG,
    PRUNED_STEP_TAG,
    PRUNED_TAG,
    objective_value,
)

SEED = "seed"
# What a trial's job measured besides its loss (callbacks/study_reports.py), by objective name.
MEASURED_METRICS = {"fit_seconds": "fit/seconds", "parameters": "model/parameters"}


@dataclass
class Child:
    job: int
    run_id: str
    run_name: str
    status: str
    overrides: dict[str, str]
    # The objective: what sweep.objective names, by default final/val_loss, else
    # final/train_loss; NaN when missing.
    loss: float
    error: str
    stop: str = ""  # how early stopping ended it ("patience at epoch 12"); "" when it did not
    pruned: str = ""  # where the pruner stopped it ("step 40"); "" when it was not pruned
    measured: dict[str, float] = field(default_factory=dict)  # fit_seconds, parameters
    objective: str = ""  # the metric sweep.objective named; "" for the default
    direction: str = "minimize"

    @property
    def finished(self) -> bool:
        return (
            self.status == EndStatus.FINISHED.value and math.isfinite(self.loss) and not self.pruned
        )

    @property
    def failed(self) -> bool:
        return not self.finished and not self.pruned


def child_of(run: Run) -> Child:
    metrics, tags = run.data.metrics, run.data.tags
    overrides = json.loads(tags.get(OVERRIDES_TAG, "[]"))
    pruned = ""
    if tags.get(PRUNED_TAG) == "true":
        pruned = f"step {tags.get(PRUNED_STEP_TAG, '?')}"
    return Child(
        job=int(tags.get(JOB_TAG, -1)),
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        status=run.info.status,
        overrides={override_key(o): o.split("=", 1)[1] for o in overrides if "=" in o},
        loss=value if (value := objective_value(metrics, tags)) is not None else math.nan,
        error=tags.get(ERROR_TAG, ""),
        stop=early_stop(tags),
        pruned=pruned,
        measured={k: metrics[m] for k, m in MEASURED_METRICS.items() if m in metrics},
        objective=tags.get(OBJECTIVE_TAG, ""),
        direction=tags.get(DIRECTION_TAG, "minimize"),
    )


def latest_per_job(runs: list[Run]) -> list[Child]:
    newest: dict[int, Run] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):
        newest[int(run.data.tags.get(JOB_TAG, -1))] = run
    return [child_of(run) for _, run in sorted(newest.items())]


def early_stop(tags: dict[str, str]) -> str:
    reason = tags.get("trainlab.early_stop.reason")
    return f"{reason} at epoch {tags.get('trainlab.early_stop.epoch', '?')}" if reason else ""


def table(children: list[Child], keys: list[str]) -> list[dict[str, Any]]:
    """One row per child; `early_stop` and `pruned` columns when any child has one."""
    stops = any(c.stop for c in children)
    pruned = any(c.pruned for c in children)
    return [
        {
            "job": c.job,
            **{k: c.overrides.get(k, "") for k in keys},
            "final_loss": c.loss,
            **({"early_stop": c.stop} if stops else {}),
            **({"pruned": c.pruned} if pruned else {}),
            "status": c.status,
            "run_id": c.run_id,
            "error": c.error,
        }
        for c in children
    ]


@dataclass
class Configuration:
    """The replicates of one configuration: its children (one per seed) and their spread."""

    number: int
    values: dict[str, str]  # the swept values, seed left out
    children: list[Child]

    @property
    def losses(self) -> list[float]:
        return [c.loss for c in self.children if c.finished]

    @property
    def complete(self) -> bool:
        """Every replicate finished: only then does the mean compare with the others'."""
        return bool(self.children) and all(c.finished for c in self.children)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.losses) if self.losses else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.losses) if len(self.losses) > 1 else 0.0


def configurations(children: list[Child], keys: list[str]) -> list[Configuration]:
    """Children grouped by their swept values other than the seed, in job order."""
    keys = [k for k in keys if k != SEED]
    groups: dict[tuple[str, ...], Configuration] = {}
    for child in children:
        values = tuple(child.overrides.get(k, "") for k in keys)
        if values not in groups:
            groups[values] = Configuration(len(groups), dict(zip(keys, values, strict=True)), [])
        groups[values].children.append(child)
    return list(groups.values())


def replicate_table(groups: list[Configuration]) -> list[dict[str, Any]]:
    return [
        {
            "configuration": g.number,
            **g.values,
            "mean_loss": g.mean,
            "std_loss": g.std,
            "replicates": len(g.children),
            "finished": len(g.losses),
            "seeds": " ".join(c.overrides.get(SEED, "?") for c in g.children),
            "jobs": " ".join(str(c.job) for c in g.children),
        }
        for g in groups
    ]


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def to_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No child runs.\n"
    cells = [[f"{v:.6g}" if isinstance(v, float) else str(v) for v in r.values()] for r in rows]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"
