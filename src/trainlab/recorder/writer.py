"""The MLflow side of one run, inside the recorder process: create (or re-open) the run, write
what the trainer hands over, and end it with its plots, model and status.

The history the plots are drawn from is kept here as the rows arrive (plots.History), so the
plots never read the run's metrics back from the store (a read that grows with the run). A
recorder that takes a run over from one that stopped (`RunSpec.takeover`) reads it back once:
what the store holds is both where the plots start and what it does not write again.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
from mlflow.entities import Metric, RunStatus
from mlflow.tracking import MlflowClient

from trainlab.recorder.bulk_metrics import as_metrics, for_client
from trainlab.recorder.commits import STEP_TAG, CommitGate, recorded_ends, recorded_rows
from trainlab.recorder.dataset_inputs import dataset_input, link_inputs
from trainlab.recorder.experiments import as_params, as_tags, experiment_id
from trainlab.recorder.model import log_trained_model
from trainlab.recorder.plots import History, log_figures, log_run_plots
from trainlab.recorder.rerun_verification import Trajectory, verify
from trainlab.recorder.run_files import REQUIREMENTS, log_files
from trainlab.recorder.stale_runs import before_resume
from trainlab.recorder.system_metrics import start_sampling, stop_sampling
from trainlab.tracking.environment import installed_packages
from trainlab.tracking.liveness import FAILURE_TAG, HEARTBEAT_TAG, LIVENESS_TAGS, recorder_tags
from trainlab.tracking.messages import (
    Commit,
    EndStatus,
    FinalReport,
    Rows,
    RunInfo,
    RunSpec,
    RunStart,
)
from trainlab.tracking.payloads import PlotData
from trainlab.tracking.tags import ERROR_TAG


class RunWriter:
    """Everything the recorder does for one run; any MLflow error ends the run FAILED."""

    def __init__(self, client: MlflowClient, spec: RunSpec, parent_tags: dict[str, str]) -> None:
        self.client, self.spec = client, spec
        # The metric rows' path into the store (recorder/bulk_metrics.py): the job logs it.
        self.bulk, path = for_client(client)
        self.last_beat = time.time()
        alive = recorder_tags(self.last_beat, spec.heartbeat_seconds)
        # Per metric, the last step already in the store when a resume recomputes it (after a
        # commit that was cut short; see recorder/commits.py): those rows are not written twice.
        self.skip: dict[str, int] = {}
        if spec.resume_run_id is None:
            exp_id = experiment_id(client, spec.experiment_name, spec.artifact_root)
            tags = {**spec.tags, **parent_tags, **alive}
            run = client.create_run(exp_id, run_name=spec.run_name, tags=tags)
        else:
            if not spec.takeover:  # its own trainer holds it, alive: not stale, not refused
                before_resume(client, client.get_run(spec.resume_run_id))
            client.update_run(spec.resume_run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            # The processes that record it now, for whoever asks whether it is alive.
            now = {k: v for k, v in spec.tags.items() if k in LIVENESS_TAGS}
            client.log_batch(spec.resume_run_id, tags=as_tags({**now, **alive}))
            run = client.get_run(spec.resume_run_id)
            if not spec.takeover:
                self.skip = recorded_ends(client, spec.resume_run_id)
        self.artifact_uri: str = run.info.artifact_uri
        self.info = RunInfo(
            run_id=run.info.run_id,
            run_name=run.info.run_name or "",
            experiment_id=run.info.experiment_id,
            uri=spec.uri,
            metric_rows=path,
        )
        if spec.resume_run_id is not None:
            # How the last attempt ended is no longer how the run ends.
            for key in (FAILURE_TAG, ERROR_TAG):
                if key in run.data.tags:
                    client.delete_tag(self.run_id, key)
            if spec.tags:
                self.tags(spec.tags)  # this attempt's cluster job, for its own requeue
        self.history = History()
        self.trajectory = Trajectory() if spec.verify_against else None
        if spec.takeover:
            # The fit goes back to the last checkpoint, or to its start before the first one
            # (whose rows were written as they came): every step the store holds is skipped.
            for recorded in recorded_rows(client, run):
                self.skip[recorded.keys[0]] = int(recorded.steps.max(initial=-1))
                self.drawn(recorded)
        self.gate = CommitGate(client, self.info.run_id, self.write_rows, spec.gated)
        self.gate.committed = STEP_TAG in run.data.tags
        self.finished = False
        self.warnings: list[str] = []
        self.system_metrics = None  # MLflow's sampler of system/... for this run, while it runs
        if spec.system_metrics_seconds is not None:
            try:
                self.system_metrics = start_sampling(
                    self.run_id,
                    spec.uri,
                    spec.system_metrics_seconds,
                    resumed=spec.resume_run_id is not None,
                )
            except Exception as err:  # psutil missing ...: the run goes on without them
                self.warnings.append(f"system metrics not recorded: {err}")

    @property
    def run_id(self) -> str:
        return self.info.run_id

    def beat(self, now: float) -> None:
        """Rewrite the heartbeat tag once its period has passed (one small write)."""
        if now - self.last_beat >= self.spec.heartbeat_seconds:
            self.last_beat = now
            self.tags({HEARTBEAT_TAG: f"{now:.0f}"})

    def start(self, start: RunStart) -> None:
        self.client.log_batch(self.run_id, params=as_params(start.params))
        texts = {**start.texts, REQUIREMENTS: installed_packages()}
        log_files(self.client, self.run_id, start.files, texts)
        if start.datasets:
            inputs = [dataset_input(record) for record in start.datasets]
            link_inputs(self.client, self.run_id, inputs)
        self.log_metrics(start.metrics, step=0)

    def rows(self, *batch: Rows) -> None:
        self.gate.rows(*batch)

    def commit(self, commit: Commit) -> None:
        self.gate.commit(commit)

    def write_rows(self, *batch: Rows) -> None:
        """Write `batch` in order, in one transaction on the bulk path (one log_batch else)."""
        writes, drawn = [], []
        for rows in batch:
            keep, shown = None, rows  # keep: rows x keys, what the store does not hold yet
            if self.skip:
                after = np.array([self.skip.get(key, -1) for key in rows.keys], dtype=np.int64)
                keep = rows.steps[:, None] > after[None, :]
                if self.spec.takeover:  # the plots have those steps from the store already
                    ahead = rows.steps > after.max(initial=-1)
                    steps, times, values = rows.steps[ahead], rows.times[ahead], rows.values[ahead]
                    shown = dataclasses.replace(rows, steps=steps, times=times, values=values)
                if len(rows.steps) and int(rows.steps.min()) > max(self.skip.values()):
                    self.skip = {}
            writes.append((rows, keep))
            drawn.append(shown)
        if self.bulk is not None:
            self.bulk.write_all(self.run_id, writes)
        else:
            metrics = [metric for rows, keep in writes for metric in as_metrics(rows, keep)]
            self.client.log_batch(self.run_id, metrics=metrics)
        for shown in drawn:
            self.drawn(shown)

    def drawn(self, rows: Rows) -> None:
        """Rows in the store, for the plots and a rerun's verification."""
        self.history.add(rows)
        if self.trajectory is not None:
            self.trajectory.add(rows)

    def unrecorded(self, metrics: list[Metric]) -> list[Metric]:
        return [m for m in metrics if m.step > self.skip.get(m.key, -1)]

    def log_metrics(self, metrics: dict[str, float], step: int, ms: int = 0) -> None:
        batch = self.unrecorded([Metric(k, float(v), ms, step) for k, v in metrics.items()])
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=as_tags(tags))

    def params(self, params: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, params=as_params(params))

    def artifact(self, snapshot: str, artifact_path: str, name: str) -> None:
        """Log the trainer's snapshot (a hard link) of a file under its own name; remove it."""
        try:
            with tempfile.TemporaryDirectory(prefix="trainlab-artifact-") as folder:
                named = Path(folder, name)
                os.link(snapshot, named)
                self.client.log_artifact(self.run_id, str(named), artifact_path)
        finally:
            Path(snapshot).unlink(missing_ok=True)

    def finish(self, report: FinalReport, clock_ms: int) -> RunInfo:
        """Final metrics, tags, plots and model; then the status. A plot or model that cannot
        be written is reported (a warning) without failing a run that trained."""
        # KILLED ends at its last commit (a resume computes the rest); else all it was handed.
        self.gate.end(resumable=report.status is EndStatus.KILLED)
        finished = report.status is EndStatus.FINISHED
        scored = self.score(report) if report.evaluation is not None and finished else {}
        tags = {**report.tags, **({ERROR_TAG: report.error} if report.error else {})}
        # One write (a transaction the trainer waits for): final, test/* and system metrics, tags.
        final = {**report.metrics, **scored}
        ending = [Metric(k, float(v), clock_ms, report.step) for k, v in final.items()]
        ending = self.unrecorded(ending) + self.stop_system_metrics()
        if ending or tags:
            self.client.log_batch(self.run_id, metrics=ending, tags=as_tags(tags))
        for artifact_file, text in report.texts.items():
            self.client.log_text(self.run_id, text, artifact_file)
        if report.plots is not None:
            self.draw(report, report.plots, scored)
        model_uri = None
        if report.model is not None and finished:
            try:  # the final metrics linked to the model, as MLflow links them
                model_uri = log_trained_model(
                    self.client, self.run_id, report.model, report.step, final, clock_ms
                )
            except Exception as err:
                self.warnings.append(f"model not logged: {err}")
                traceback.print_exc()
        lines: tuple[str, ...] = ()
        if self.trajectory is not None and self.spec.verify_against and finished:
            try:
                verified = verify(
                    self.client, self.spec.verify_against, self.run_id, self.trajectory
                )
                self.log_metrics(verified.metrics, 0, clock_ms)
                self.tags(verified.tags)
                lines = verified.lines
            except Exception as err:  # the rerun itself is recorded; only the comparison is not
                self.warnings.append(f"rerun not verified: {err}")
        self.end(report.status)
        return dataclasses.replace(
            self.info,
            model_uri=model_uri,
            warnings=tuple(self.warnings),
            verification=lines,
            metrics=final,
        )

    def score(self, report: FinalReport) -> dict[str, float]:
        """The held-out rows' test/* metrics: only runs with test rows import scikit-learn's."""
        from trainlab.recorder import held_out

        assert report.evaluation is not None
        try:
            found, notes = held_out.scores(report.evaluation)
        except Exception as err:  # the run trained; only its evaluation is missing
            self.warnings.append(f"test rows not scored: {err}")
            return {}
        self.warnings.extend(notes)
        return found

    def draw(self, report: FinalReport, plots: PlotData, scored: dict[str, float]) -> None:
        """The run's plots, and the held-out rows' (plots/test/*) where they were scored."""
        try:
            log_run_plots(self.client, self.run_id, self.history, plots)
        except Exception as err:  # drawing must not hide how the run ended
            self.warnings.append(f"plots not drawn: {err}")
        if scored and report.evaluation is not None:
            from trainlab.recorder import held_out  # imported by `score` already

            try:
                drawn = held_out.figures(report.evaluation)
                log_figures(self.client, self.run_id, drawn, "plots/test")
            except Exception as err:
                self.warnings.append(f"test rows not drawn: {err}")

    def stop_system_metrics(self, write: bool = False) -> list[Metric]:
        """The sampler stopped; its last sample, written or returned (a failure: a warning)."""
        sampler, self.system_metrics = self.system_metrics, None
        try:
            last = stop_sampling(sampler) if sampler is not None else []
            if write and last:
                self.client.log_batch(self.run_id, metrics=last)
            return [] if write else last
        except Exception as err:
            self.warnings.append(f"system metrics not all recorded: {err}")
            return []

    def end(self, status: EndStatus) -> None:
        self.stop_system_metrics(write=True)  # none left where `finish` took the last sample
        self.client.set_terminated(self.run_id, status.value)
        self.finished = True
