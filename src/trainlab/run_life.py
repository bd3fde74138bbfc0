"""The run of one job through its life: opened once the job's inputs are checked and its model
exists, finished once with everything it produced, and always ended, however the job ends.

`RunSession` is what the pipeline holds: `open` (the run's tags, config, first metrics),
`finish` (final metrics, plots, model), and, on any exception, an ending that keeps what was
recorded: FAILED with the error, or KILLED for Ctrl-C/SIGTERM or a recorder that stopped for
good (with how to resume: resume/failures.py). A sweep job that fails before its run
exists still gets a FAILED run, so the sweep's summary lists it.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig

from trainlab.config.data import not_applicable
from trainlab.config.flat import flatten
from trainlab.config.schema import TrainConfig, as_plain_dict
from trainlab.data.dataset import Dataset
from trainlab.engines.base import ResumePoint
from trainlab.engines.distributed import choose_strategy
from trainlab.errors import one_line
from trainlab.paths import task_overrides
from trainlab.resume.failures import end_after, resume_command
from trainlab.run_handover import evaluation, model_payload, plot_data, rebuild_spec
from trainlab.signals import Interrupted
from trainlab.tracking.connection import TrackingTarget
from trainlab.tracking.environment import COMMAND_TAG, ENV_TAG, command_line, environment_tags
from trainlab.tracking.liveness import process_tags
from trainlab.tracking.messages import (
    EndStatus,
    FinalReport,
    Reply,
    RunInfo,
    RunSpec,
    RunStart,
)
from trainlab.tracking.run import TrackedRun
from trainlab.tracking.source import git_changes, git_commit
from trainlab.tracking.tags import (
    DIRECTION_TAG,
    FORKED_AT_TAG,
    FORKED_FROM_TAG,
    OBJECTIVE_TAG,
    RERUN_TAG,
)

# MLflow's limit on a param's value: the recorder cuts there (recorder/experiments.py).
PARAM_VALUE_CHARS = 6000


@dataclass(frozen=True)
class Ending:
    """How the trained job ended, for the run's final report."""

    steps: int
    metrics: dict[str, float]  # final/*, pred/after
    module: L.LightningModule


class RunSession:
    def __init__(self, target: TrackingTarget | None, settings: TrainConfig) -> None:
        self.target, self.settings = target, settings
        self.run: TrackedRun | None = None
        self.data: Dataset | None = None
        self.module: L.LightningModule | None = None
        self.resume_from: ResumePoint | None = None
        self.ended = False

    def open(
        self,
        accelerator: str,
        data: Dataset,
        module: L.LightningModule,
        first_metrics: dict[str, float],
        resume_from: ResumePoint | None,
    ) -> TrackedRun | None:
        """Create the run (or re-open the resumed one) and log what is known before training."""
        self.data, self.module, self.resume_from = data, module, resume_from
        if self.target is None:
            return None
        self.run = self._open(run_tags(self.settings, accelerator), resume_from)
        resumed = resume_from is not None and resume_from.fork is None
        if self.target.wait is Reply.HANDLED and (resumed or self.settings.device.world_size > 1):
            # A resumed run still recorded elsewhere stops the job here, before a second trainer
            # writes its checkpoints; so does any refusal where several processes train. A new
            # run trains while the recorder creates it: a store MLflow refuses stops the fit at
            # its next step (TrackedRun.check_opened), with the same line.
            self.run.info()
        if resume_from is not None and resume_from.fork is None:  # it has its config already
            print(f"Resuming run {resume_from.run_id} at step {resume_from.step}")
            self.run.set_tags({"trainlab.resumed_at_step": resume_from.step})
        else:
            self.run.start(self._run_start(first_metrics))
        if resume_from is not None and resume_from.fork is not None:
            source, line = resume_from.run_id, resume_from.fork.dashboard
            print(f"Forking run {source} at step {resume_from.step} into a new run")
            print(f"The source run's {line[0].lower()}{line[1:]}", flush=True)  # its dashboard
        return self.run

    def _run_start(self, first_metrics: dict[str, float]) -> RunStart:
        """The config as params and files (config/resolved.yaml, config/overrides.yaml)."""
        resolved = as_plain_dict(self.settings)
        files = {
            "config/resolved.yaml": resolved,
            "config/overrides.yaml": {"overrides": task_overrides()},
        }
        skipped = not_applicable(self.settings.data)
        params = {
            k: str(v)
            for k, v in flatten(resolved).items()
            if not any(k == f"data.{key}" for key in skipped)
        }
        for key, value in params.items():
            if len(value) > PARAM_VALUE_CHARS:
                print(
                    f"trainlab-train: note: {key} is {len(value)} characters; MLflow keeps the "
                    f"first {PARAM_VALUE_CHARS} as the param, the whole value is in the run's "
                    "config/resolved.yaml",
                    flush=True,
                )
        changes = git_changes()
        texts = {"environment/git.diff": changes[1]} if changes and changes[0] else {}
        lineage = self.data.lineage if self.data is not None else ()
        return RunStart(
            params=params, files=files, metrics=first_metrics, texts=texts, datasets=lineage
        )

    def _open(self, tags: dict[str, str], resume_from: ResumePoint | None) -> TrackedRun:
        target = self.target
        assert target is not None
        # Rows wait for the checkpoint that commits them where periodic checkpoints exist.
        gated = self.settings.engine.name == "lightning" and self.settings.checkpoint.periodic
        tracking, rerun = self.settings.tracking, self.settings.rerun
        spec = RunSpec(
            uri=target.uri,
            experiment_name=target.experiment_name,
            run_name=target.run_name,
            tags={**tags, **target.tags},
            artifact_root=target.artifact_root,
            resume_run_id=resume_from.run_id if resume_from and not resume_from.fork else None,
            sweep_token=target.sweep_token,
            system_metrics_seconds=(
                tracking.system_metrics_every_seconds if tracking.system_metrics else None
            ),
            verify_against=rerun.run if rerun.verify else None,
            heartbeat_seconds=tracking.heartbeat_seconds,
            gated=gated,
        )
        return TrackedRun(target.recorder, spec, tracking.flush_every_seconds, target.wait)

    def finish(self, ending: Ending) -> RunInfo | None:
        self.ended = True
        if self.run is None:
            return None
        tracking = self.settings.tracking
        model = None
        if tracking.log_model and self.data is not None:
            rebuild = rebuild_spec(self.settings, self.data)
            model = model_payload(self.data, ending.module, tracking, rebuild)
        if tracking.log_model and model is None:
            print(
                "trainlab-train: note: no model logged: its forward does not take one tensor of "
                "the batches' inputs (MLflow's PyTorch models take one array); "
                "tracking.log_model=false says so once and for all"
            )
        report = FinalReport(
            status=EndStatus.FINISHED,
            step=max(ending.steps - 1, 0),
            metrics=ending.metrics,
            plots=plot_data(self.data, ending.module) if tracking.plots else None,
            model=model,
            evaluation=evaluation(self.data, ending.module),
        )
        assert self.target is not None
        info = self.run.info()  # asked first: a sweep job does not wait for its plots and model
        logging.getLogger(__name__).info("run %s: %s", info.run_id, info.metric_rows)
        return self.run.finish(report, self.target.wait) or info

    def fail(self, err: BaseException) -> None:
        """End the run FAILED (KILLED for a signal) with what it recorded; say how to resume."""
        if self.ended or self.target is None:
            return
        self.ended = True
        if self.run is None and not self.target.open_run_on_early_failure:
            return
        interrupted = isinstance(err, KeyboardInterrupt | SystemExit)
        run = self.run
        if run is None:  # a sweep job that failed before its run existed
            run = self._open({"mlflow.source.name": "trainlab-train"}, None)
            run.start(self._run_start({}))
        text = traceback.format_exc()  # before anything below can replace it
        plots = None
        if self.settings.tracking.plots and self.data is not None and self.run is not None:
            # The loss curve at least: a model that cannot predict (what failed) draws no fit.
            try:
                plots = plot_data(self.data, self.module)
            except Exception:
                plots = plot_data(None, None)
        report = FinalReport(
            status=EndStatus.KILLED if interrupted else EndStatus.FAILED,
            step=0,
            error=None if interrupted else one_line(err),
            texts={} if interrupted else {"error.txt": text},
            plots=plots,
        )
        if interrupted:
            run.finish(report, Reply.HANDLED)
            report_interrupt(err, run, self.resume_from)
        else:
            resumed = self.resume_from if self.resume_from and not self.resume_from.fork else None
            end_after(err, run, report, resumed.checkpoint if resumed else None)


@contextmanager
def run_session(target: TrackingTarget | None, settings: TrainConfig) -> Iterator[RunSession]:
    session = RunSession(target, settings)
    try:
        yield session
    except BaseException as err:
        session.fail(err)
        raise


def report_interrupt(err: BaseException, run: TrackedRun, resume_from: ResumePoint | None) -> None:
    name = err.name if isinstance(err, Interrupted) else "KeyboardInterrupt"
    steps = err.steps if isinstance(err, Interrupted) else None
    checkpoint = err.checkpoint if isinstance(err, Interrupted) else None
    after = f" after step {steps - 1}" if steps else ""
    where = f"; checkpoint {checkpoint}" if checkpoint else ""
    print(f"Interrupted by {name}{after}: run {run.run_id} is KILLED{where}", flush=True)
    if checkpoint:
        print(f"Resume with: {resume_command(run)}", flush=True)


def run_tags(settings: TrainConfig, accelerator: str) -> dict[str, str]:
    tags = {"mlflow.source.name": "trainlab-train", "trainlab.engine": settings.engine.name}
    tags.update(process_tags())  # host and pid: whether the run is still alive (liveness.py)
    tags["trainlab.device"] = accelerator
    tags["trainlab.precision"] = settings.device.precision
    if settings.device.world_size > 1:
        tags["trainlab.strategy"] = choose_strategy(settings.device)
    if HydraConfig.initialized():
        tags["trainlab.preset"] = str(HydraConfig.get().runtime.choices.get("experiment") or "none")
    tags.update(environment_tags())
    tags[COMMAND_TAG] = command_line(sys.orig_argv)
    tags[f"{ENV_TAG}cuda"] = torch.version.cuda or "none"  # the CUDA torch was built for
    if accelerator == "gpu":
        tags[f"{ENV_TAG}gpu"] = torch.cuda.get_device_name()
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    changes = git_changes()
    if changes is not None:
        tags["trainlab.git.dirty"] = str(changes[0]).lower()
    if settings.rerun.run is not None:
        tags[RERUN_TAG] = settings.rerun.run
    if settings.fork is not None:  # recorded as <run id>@<step> (resume/fork.py)
        source, _, step = settings.fork.partition("@")
        tags.update({FORKED_FROM_TAG: source, FORKED_AT_TAG: step})
    if settings.sweep.objective is not None:  # what a sweep's parent ranks this run by
        tags[OBJECTIVE_TAG] = settings.sweep.objective
        tags[DIRECTION_TAG] = settings.sweep.direction
    tags.update({str(k): str(v) for k, v in settings.tags.items()})
    return tags
