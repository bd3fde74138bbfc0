"""A sweep's parent run, hosted by the recorder of the sweep's main process: created before the
first job, ended with a summary of every child: a table, a plot, the best child.

The children are read back from MLflow (runs tagged with the parent's id), so a job that failed is
listed as FAILED, whatever the launcher and wherever the job ran; the train/loss curves of the
children this recorder wrote are kept from their rows instead of read back.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from trainlab.config.checks import override_key
from trainlab.recorder.plots import Curve, History
from trainlab.recorder.stale_runs import every_run, mark_stale
from trainlab.recorder.writer import as_params, as_tags, experiment_id
from trainlab.tracking.liveness import HEARTBEAT_SECONDS, HEARTBEAT_TAG, recorder_tags, staleness
from trainlab.tracking.messages import EndStatus, SweepEnd, SweepOutcome, SweepSpec
from trainlab.tracking.tags import ERROR_TAG, JOB_TAG, OVERRIDES_TAG, PARENT_TAG

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
    stop: str = ""  # how early stopping ended it ("patience at epoch 12"); "" when it did not

    @property
    def finished(self) -> bool:
        return self.status == EndStatus.FINISHED.value and math.isfinite(self.loss)


class SweepParent:
    def __init__(self, client: MlflowClient, spec: SweepSpec) -> None:
        self.client, self.spec = client, spec
        self.experiment_id = experiment_id(client, spec.experiment_name, spec.artifact_root)
        self.last_beat = time.time()
        tags = {**spec.tags, **recorder_tags(self.last_beat)}
        run = client.create_run(self.experiment_id, run_name=spec.run_name, tags=tags)
        self.parent_run_id = run.info.run_id
        client.log_batch(self.parent_run_id, params=as_params(spec.params))
        self.curves: dict[str, Curve] = {}

    def beat(self, now: float) -> None:
        if now - self.last_beat >= HEARTBEAT_SECONDS:
            self.last_beat = now
            self.client.set_tag(self.parent_run_id, HEARTBEAT_TAG, f"{now:.0f}")

    def keep_curve(self, run_id: str, history: History) -> None:
        if "train/loss" in history.curves:
            self.curves[run_id] = history.curves["train/loss"]

    def children(self) -> list[Child]:
        mine = f"tags.`{PARENT_TAG}` = '{self.parent_run_id}'"
        runs = every_run(self.client, [self.experiment_id], mine)
        children = []
        for run in runs:
            reason = staleness(run.data.tags) if run.info.status == "RUNNING" else None
            if reason is not None:  # a job killed with its recorder (a node that failed ...)
                mark_stale(self.client, run, reason)
                run = self.client.get_run(run.info.run_id)
            metrics, tags = run.data.metrics, run.data.tags
            overrides = json.loads(tags.get(OVERRIDES_TAG, "[]"))
            children.append(
                Child(
                    job=int(tags.get(JOB_TAG, -1)),
                    run_id=run.info.run_id,
                    run_name=run.info.run_name or "",
                    status=run.info.status,
                    overrides={override_key(o): o.split("=", 1)[1] for o in overrides if "=" in o},
                    loss=metrics.get("final/val_loss", metrics.get("final/train_loss", math.nan)),
                    error=tags.get(ERROR_TAG, ""),
                    stop=early_stop(tags),
                )
            )
        return sorted(children, key=lambda c: c.job)

    def curve(self, run_id: str) -> tuple[list[int], list[float]]:
        if run_id in self.curves:
            return self.curves[run_id].finite()
        history = self.client.get_metric_history(run_id, "train/loss")
        return [m.step for m in history], [m.value for m in history]

    def end(self, end: SweepEnd) -> SweepOutcome:
        """Summary artifacts, best child, final status; and why the command should fail."""
        client, parent, keys = self.client, self.parent_run_id, list(self.spec.swept_keys)
        if end.interrupted or end.error:
            if end.error:
                client.set_tag(parent, ERROR_TAG, end.error[:5000])
            status = EndStatus.KILLED if end.interrupted else EndStatus.FAILED
            client.set_terminated(parent, status.value)
            return SweepOutcome(parent_run_id=parent, summary="", problem=end.error, warning=None)
        children = self.children()
        rows = table(children, keys)
        with tempfile.TemporaryDirectory(prefix="trainlab-sweep-") as folder:
            Path(folder, "children.csv").write_text(to_csv(rows))
            Path(folder, "children.md").write_text(to_markdown(rows))
            plot(self, children, keys).savefig(Path(folder, "losses.png"), dpi=100)
            client.log_artifacts(parent, folder, "summary")
        for name in SWEEP_FILES:
            if Path(self.spec.sweep_dir, name).is_file():
                client.log_artifact(parent, str(Path(self.spec.sweep_dir, name)), "sweep")
        done = [c for c in children if c.finished]
        failed = [c for c in children if not c.finished]
        metrics = {"sweep/children": len(children), "sweep/finished": len(done)}
        metrics["sweep/failed"] = len(failed)
        tags: dict[str, str] = {}
        lines = [f"Sweep summary ({len(done)} of {len(children)} children finished):"]
        lines.append(to_markdown(rows).rstrip("\n"))
        if done:
            best = min(done, key=lambda c: c.loss)
            metrics["best/final_loss"] = best.loss
            tags = {
                "trainlab.sweep.best_run_id": best.run_id,
                "trainlab.sweep.best_run_name": best.run_name,
                "trainlab.sweep.best_job": str(best.job),
            }
            tags.update({f"best.{k}": best.overrides.get(k, "") for k in keys})
            lines.append(
                f"Best: job {best.job} ({best.run_name}), final loss {best.loss:.6g}, "
                f"run {best.run_id}"
            )
        if end.stopped:
            tags["trainlab.sweep.stopped"] = end.stopped
        client.log_batch(
            parent,
            metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
            tags=as_tags(tags),
        )
        ok = bool(done) and not end.stopped
        status = EndStatus.FINISHED if ok else EndStatus.FAILED
        client.set_terminated(parent, status.value)
        lines.append(f"Parent MLflow run {parent}: summary/children.md, summary/losses.png")
        problem, warning = end.stopped, None
        if not problem and not done:
            problem = (
                f"every job of the sweep failed ({len(children)} children); see parent run {parent}"
            )
        elif not problem and failed:
            jobs = ", ".join(str(c.job) for c in failed)
            warning = f"{len(failed)} of {len(children)} jobs failed: {jobs}"
        summary = "\n".join(lines)
        return SweepOutcome(parent_run_id=parent, summary=summary, problem=problem, warning=warning)


def early_stop(tags: dict[str, str]) -> str:
    reason = tags.get("trainlab.early_stop.reason")
    return f"{reason} at epoch {tags.get('trainlab.early_stop.epoch', '?')}" if reason else ""


def table(children: list[Child], keys: list[str]) -> list[dict[str, Any]]:
    """One row per child; an `early_stop` column when any child stopped early."""
    stops = any(c.stop for c in children)
    return [
        {
            "job": c.job,
            **{k: c.overrides.get(k, "") for k in keys},
            "final_loss": c.loss,
            **({"early_stop": c.stop} if stops else {}),
            "status": c.status,
            "run_id": c.run_id,
            "error": c.error,
        }
        for c in children
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


def plot(sweep: SweepParent, children: list[Child], keys: list[str]) -> Figure:
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
        steps, values = sweep.curve(child.run_id)
        if steps:
            right.plot(steps, values, label=child.run_name)
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
