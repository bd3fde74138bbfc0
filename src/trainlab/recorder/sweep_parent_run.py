"""A sweep's parent run, hosted by the recorder of the sweep's main process: created before the
first job (or re-opened when a sweep continues), ended with a summary of every child: the
table, the plots, the best child, pruned and failed children apart, each configuration's spread
over its replicates, the Pareto front of several objectives. The summary is the run's
description in the dashboard too (MLflow shows the `mlflow.note.content` tag there).

The children are read back from MLflow (runs tagged with the parent's id), so a job that failed is
listed as FAILED, whatever the launcher and wherever the job ran; the train/loss curves of the
children this recorder wrote are kept from their rows instead of read back.
"""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Metric, Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from trainlab.errors import ConfigError
from trainlab.recorder.commits import STEP_TAG as COMMIT_TAG
from trainlab.recorder.experiments import as_params, as_tags, experiment_id
from trainlab.recorder.plots import Curve, History
from trainlab.recorder.stale_runs import every_run, mark_stale
from trainlab.recorder.sweep_children import Child, latest_per_job, table, to_csv, to_markdown
from trainlab.recorder.sweep_summary import Summary
from trainlab.tracking.liveness import (
    HEARTBEAT_SECONDS,
    HEARTBEAT_TAG,
    HOST_TAG,
    LIVENESS_TAGS,
    PID_START_TAG,
    PID_TAG,
    alive_here,
    recorder_tags,
    staleness,
)
from trainlab.tracking.messages import EndStatus, SweepEnd, SweepOutcome, SweepSpec, SweepStarted
from trainlab.tracking.store_checks import dashboard_line
from trainlab.tracking.tags import ERROR_TAG, JOB_TAG, PARENT_TAG

# Files a sweeper leaves in the sweep dir that belong on the parent run (Optuna's results).
SWEEP_FILES = ("multirun.yaml", "optimization_results.yaml")
SWEEP_TAG, DIR_TAG = "trainlab.sweep", "trainlab.sweep.dir"
CONTINUED_TAG = "trainlab.sweep.continued"  # how many times the sweep was continued
NOTE_TAG = "mlflow.note.content"  # the run's description in MLflow's dashboard
NOTE_CHARS = 5000
REPLACES_TAG = "trainlab.sweep.replaces"  # a job's run that took over from an empty killed one
SETTLE_SECONDS = 10.0  # how long the summary waits for the runs of jobs whose process died


class SweepParent:
    def __init__(self, client: MlflowClient, spec: SweepSpec) -> None:
        self.client, self.spec = client, spec
        self.experiment_id = experiment_id(client, spec.experiment_name, spec.artifact_root)
        self.last_beat = time.time()
        alive = recorder_tags(self.last_beat)
        found = self.to_continue()
        if found is None:
            tags = {**spec.tags, DIR_TAG: spec.sweep_dir, **alive}
            run = client.create_run(self.experiment_id, run_name=spec.run_name, tags=tags)
            client.log_batch(run.info.run_id, params=as_params(spec.params))
        else:
            run = found
            client.update_run(run.info.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            if ERROR_TAG in run.data.tags:
                client.delete_tag(run.info.run_id, ERROR_TAG)
            continued = int(run.data.tags.get(CONTINUED_TAG, "0")) + 1
            now = {k: v for k, v in spec.tags.items() if k in LIVENESS_TAGS}
            client.log_batch(
                run.info.run_id, tags=as_tags({**now, **alive, CONTINUED_TAG: continued})
            )
        self.parent_run_id = run.info.run_id
        self.sweep_dir = run.data.tags.get(DIR_TAG, spec.sweep_dir)
        self.started = SweepStarted(parent_run_id=self.parent_run_id, sweep_dir=self.sweep_dir)
        self.curves: dict[str, Curve] = {}

    def to_continue(self) -> Run | None:
        """`sweep.resume=<id>` (refused unless a sweep's parent), else the parent of this
        sweep's folder when the store has one (the same command continues its sweep there)."""
        wanted = self.spec.resume_run_id
        if wanted is not None:
            try:
                run = self.client.get_run(wanted)
            except MlflowException:
                raise ConfigError(
                    f"sweep.resume={wanted}: no such run in the store {self.spec.uri}; expected "
                    "a sweep's parent run id (printed at the end of a sweep)"
                ) from None
            if run.data.tags.get(SWEEP_TAG) != "parent":
                raise ConfigError(
                    f"sweep.resume={wanted}: run {wanted} ({run.info.run_name}) is not a sweep's "
                    f"parent run; expected the id of a run tagged {SWEEP_TAG}=parent"
                )
            return run
        mine = f"tags.`{DIR_TAG}` = '{self.spec.sweep_dir}' and tags.`{SWEEP_TAG}` = 'parent'"
        runs = every_run(self.client, [self.experiment_id], mine)
        return max(runs, key=lambda r: r.info.start_time or 0) if runs else None

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
        deadline = time.monotonic() + SETTLE_SECONDS
        while any(_dead_trainer(r) for r in runs) and time.monotonic() < deadline:
            # A job whose process died: this recorder ends its run KILLED once it reads the
            # dropped connection, which may come just after the launcher saw the process go.
            time.sleep(0.1)
            runs = every_run(self.client, [self.experiment_id], mine)
        runs = self.without_replaced(runs)
        for index, run in enumerate(runs):
            reason = staleness(run.data.tags) if run.info.status == "RUNNING" else None
            if reason is not None:  # a job killed with its recorder (a node that failed ...)
                mark_stale(self.client, run, reason)
                runs[index] = self.client.get_run(run.info.run_id)
        return latest_per_job(runs)

    def without_replaced(self, runs: list[Run]) -> list[Run]:
        """A job killed before its first checkpoint committed anything (no rows, no checkpoint)
        starts again in a new run when the sweep continues: the empty KILLED run it leaves is
        deleted (MLflow's trash: restorable), so a job has one child, the one with its history;
        the new run names it (`trainlab.sweep.replaces`)."""
        newest: dict[str, Run] = {}
        for run in sorted(runs, key=lambda r: r.info.start_time or 0):
            newest[run.data.tags.get(JOB_TAG, "")] = run
        kept = []
        for run in runs:
            latest = newest[run.data.tags.get(JOB_TAG, "")]
            empty = run.info.status == "KILLED" and COMMIT_TAG not in run.data.tags
            if run is latest or not empty:
                kept.append(run)
                continue
            self.client.set_tag(latest.info.run_id, REPLACES_TAG, run.info.run_id)
            self.client.delete_run(run.info.run_id)
        return kept

    def objective_curve(self, run_id: str) -> tuple[list[int], list[float]]:
        """A child's objective at every report: val/loss (each validation), else train/loss."""
        history = self.client.get_metric_history(run_id, "val/loss")
        if not history:
            return self.curve(run_id)
        return [m.step for m in history], [m.value for m in history]

    def curve(self, run_id: str) -> tuple[list[int], list[float]]:
        if run_id in self.curves:
            return self.curves[run_id].finite()
        history = self.client.get_metric_history(run_id, "train/loss")
        return [m.step for m in history], [m.value for m in history]

    def end(self, end: SweepEnd) -> SweepOutcome:
        """Summary artifacts, best child, final status; and why the command should fail."""
        client, parent = self.client, self.parent_run_id
        if end.interrupted or end.error:
            if end.error:
                client.set_tag(parent, ERROR_TAG, end.error[:5000])
            status = EndStatus.KILLED if end.interrupted else EndStatus.FAILED
            client.set_terminated(parent, status.value)
            return SweepOutcome(parent_run_id=parent, summary="", problem=end.error, warning=None)
        children = self.children()
        summary = Summary(children, list(self.spec.swept_keys), self.results())
        with tempfile.TemporaryDirectory(prefix="trainlab-sweep-") as folder:
            rows = table(children, summary.keys)
            Path(folder, "children.csv").write_text(to_csv(rows))
            Path(folder, "children.md").write_text(to_markdown(rows))
            files = summary.write(Path(folder), self.curve, self.objective_curve)
            client.log_artifacts(parent, folder, "summary")
        for name in SWEEP_FILES:
            if Path(self.sweep_dir, name).is_file():
                client.log_artifact(parent, str(Path(self.sweep_dir, name)), "sweep")
        for child in summary.pareto_children():
            client.set_tag(child.run_id, "trainlab.sweep.pareto", "true")
        lines = summary.lines(to_markdown(rows))
        lines.append(f"Parent MLflow run {parent}: {', '.join(['summary/children.md', *files])}")
        lines.append(dashboard_line(self.spec.uri, self.experiment_id, parent))
        note = "\n\n".join(lines)
        tags = {**summary.tags(), NOTE_TAG: note[:NOTE_CHARS]}
        if end.stopped:
            tags["trainlab.sweep.stopped"] = end.stopped
        metrics = [Metric(k, float(v), 0, 0) for k, v in summary.metrics().items()]
        metrics += [Metric(k, float(v), 0, step) for k, v, step in summary.series()]
        for chunk in range(0, max(len(metrics), 1), 1000):  # MLflow takes 1000 a request
            client.log_batch(parent, metrics=metrics[chunk : chunk + 1000])
        client.log_batch(parent, tags=as_tags(tags))
        done = [c for c in children if c.finished]
        # A job whose process died (its run KILLED) is not a result yet: the parent ends KILLED,
        # as a stopped sweep, and the same command continues that job in its own run.
        killed = tuple(c.job for c in children if c.status == EndStatus.KILLED.value)
        ok = bool(done) and not end.stopped
        status = EndStatus.KILLED if killed and not end.stopped else EndStatus.FINISHED
        client.set_terminated(parent, (status if ok else EndStatus.FAILED).value)
        problem, warning = end.stopped, None
        failed = [c for c in children if c.failed and c.job not in killed]
        if not problem and not children:
            problem = f"no job of the sweep ran; see parent run {parent}"
        elif not problem and not done:
            problem = (
                f"no job of the sweep finished ({len(children)} children: {len(failed)} failed, "
                f"{len(children) - len(failed)} pruned); see parent run {parent}"
            )
            if not summary.pruned:
                problem = f"every job of the sweep failed ({len(children)} children); see parent run {parent}"
        elif not problem and failed:
            jobs = ", ".join(str(c.job) for c in failed)
            warning = f"{len(failed)} of {len(children)} jobs failed: {jobs}"
        if not problem and killed:
            jobs = ", ".join(str(job) for job in killed)
            warning = "; ".join(
                w for w in (warning, f"{len(killed)} of {len(children)} jobs were killed "
                f"({jobs}): the same command continues them") if w
            )  # fmt: skip
        return SweepOutcome(
            parent_run_id=parent, summary="\n".join(lines), problem=problem, warning=warning,
            killed=killed,
        )  # fmt: skip

    def results(self) -> dict[str, Any]:
        """What an Optuna search left in the sweep's folder (sweeps/search.py), if anything."""
        file = Path(self.sweep_dir, "optimization_results.yaml")
        return (yaml.safe_load(file.read_text()) or {}) if file.is_file() else {}


def _dead_trainer(run: Run) -> bool:
    """A RUNNING run of this host whose trainer process is gone."""
    tags = run.data.tags
    return (
        run.info.status == "RUNNING"
        and tags.get(HOST_TAG) == socket.gethostname()
        and not alive_here(tags.get(PID_TAG), tags.get(PID_START_TAG))
    )
