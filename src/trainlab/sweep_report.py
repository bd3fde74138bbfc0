"""The parent run's summary of a sweep: a table of every child, a plot, the best child.

The children are read back from MLflow (runs tagged with the parent's id), so a job that failed is
listed as FAILED, whatever the launcher and wherever the job ran.
"""

from __future__ import annotations

import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from trainlab.sweep import ERROR_TAG, JOB_TAG, OVERRIDES_TAG, PARENT_TAG, Sweep, override_key

# Files a sweeper leaves in the sweep dir that belong on the parent run (Optuna's best params).
SWEEP_FILES = ("multirun.yaml", "optimization_results.yaml")


@dataclass
class Child:
    job: int
    run_id: str
    run_name: str
    status: str
    overrides: dict[str, str]
    loss: float  # the objective: final/val_loss, else final/train_loss; NaN when missing
    error: str

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED" and math.isfinite(self.loss)


def read_children(client: MlflowClient, sweep: Sweep) -> list[Child]:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [sweep.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{sweep.parent_run_id}'",
            max_results=1000,
            page_token=token,
        )
        runs += list(page)
        token = page.token
        if not token:
            break
    children = []
    for run in runs:
        metrics, tags = run.data.metrics, run.data.tags
        overrides = json.loads(tags.get(OVERRIDES_TAG, "[]"))
        loss = metrics.get("final/val_loss", metrics.get("final/train_loss", math.nan))
        children.append(
            Child(
                job=int(tags.get(JOB_TAG, -1)),
                run_id=run.info.run_id,
                run_name=run.info.run_name or "",
                status=run.info.status,
                overrides={override_key(o): o.split("=", 1)[1] for o in overrides if "=" in o},
                loss=loss,
                error=tags.get(ERROR_TAG, ""),
            )
        )
    return sorted(children, key=lambda c: c.job)


def table(children: list[Child], keys: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "job": c.job,
            **{k: c.overrides.get(k, "") for k in keys},
            "final_loss": c.loss,
            "status": c.status,
            "run_id": c.run_id,
            "error": c.error,
        }
        for c in children
    ]


def to_csv(rows: list[dict[str, Any]]) -> str:
    import csv

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


def plot(client: MlflowClient, children: list[Child], keys: list[str]) -> Figure:
    """Final loss against the swept value (one numeric key) or per job; every train/loss curve."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    done = [c for c in children if c.finished]
    numeric = len(keys) == 1 and all(_is_number(c.overrides.get(keys[0])) for c in done)
    if numeric and done:
        points = sorted((float(c.overrides[keys[0]]), c.loss) for c in done)
        left.plot(*zip(*points, strict=True), marker="o")
        left.set_xlabel(keys[0])
        if all(x > 0 for x, _ in points) and points[-1][0] / points[0][0] >= 10:
            left.set_xscale("log")
    else:
        left.bar(range(len(done)), [c.loss for c in done])
        left.set_xticks(range(len(done)), [str(c.job) for c in done])
        left.set_xlabel("job (see summary table)")
    left.set_ylabel("final loss")
    left.set_title("final loss per child (failed children left out)")
    for child in children:
        history = client.get_metric_history(child.run_id, "train/loss")
        if history:
            right.plot([m.step for m in history], [m.value for m in history], label=child.run_name)
    right.set_xlabel("step")
    right.set_ylabel("train/loss")
    right.set_title("train/loss of every child")
    if all(c.loss > 0 for c in done) and done:
        left.set_yscale("log")
        right.set_yscale("log")
    if 0 < len(right.get_lines()) <= 12:
        right.legend(fontsize="small")
    return fig


def _is_number(text: str | None) -> bool:
    try:
        float(text or "")
    except ValueError:
        return False
    return True


def finish_parent(sweep: Sweep, stopped: str | None) -> str | None:
    """Summary artifacts, best child, final status; returns why the sweep should exit non-zero."""
    client = MlflowClient(sweep.tracking_uri)
    parent = sweep.parent_run_id
    children = read_children(client, sweep)
    keys = sweep.swept_keys
    rows = table(children, keys)
    client.log_text(parent, to_csv(rows), "summary/children.csv")
    client.log_text(parent, to_markdown(rows), "summary/children.md")
    client.log_figure(parent, plot(client, children, keys), "summary/losses.png")
    for name in SWEEP_FILES:
        if Path(sweep.sweep_dir, name).is_file():
            client.log_artifact(parent, str(Path(sweep.sweep_dir, name)), "sweep")
    done = [c for c in children if c.finished]
    failed = [c for c in children if not c.finished]
    metrics = {"sweep/children": len(children), "sweep/finished": len(done)}
    metrics["sweep/failed"] = len(failed)
    tags = {}
    if done:
        best = min(done, key=lambda c: c.loss)
        metrics["best/final_loss"] = best.loss
        tags = {
            "trainlab.sweep.best_run_id": best.run_id,
            "trainlab.sweep.best_run_name": best.run_name,
            "trainlab.sweep.best_job": str(best.job),
        }
        tags.update({f"best.{k}": best.overrides.get(k, "") for k in keys})
    if stopped:
        tags["trainlab.sweep.stopped"] = stopped
    client.log_batch(
        parent,
        metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
        tags=[RunTag(k, v[:5000]) for k, v in tags.items()],
    )
    ok = bool(done) and not stopped
    client.set_terminated(
        parent, RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED)
    )
    print(f"Sweep summary ({len(done)} of {len(children)} children finished):")
    print(to_markdown(rows), end="")
    if done:
        print(
            f"Best: job {best.job} ({best.run_name}), final loss {best.loss:.6g}, run {best.run_id}"
        )
    print(f"Parent MLflow run {parent}: summary/children.md, summary/losses.png")
    if stopped:
        return stopped
    if not done:
        return f"every job of the sweep failed ({len(children)} children); see parent run {parent}"
    if failed:
        print(
            f"trainlab-train: warning: {len(failed)} of {len(children)} jobs failed: "
            + ", ".join(str(c.job) for c in failed),
            file=sys.stderr,
        )
    return None
