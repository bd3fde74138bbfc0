"""One job, the way a user waits for it: the checks, where its run goes, then the pipeline.

Composition and every check need no torch, so a wrong value fails within a second; the
recorder process starts next (it imports MLflow and opens the store while this process imports
torch and Lightning); the pipeline comes last. `resume=<id>`, `rerun=<id>` and `fork=<id>`
rebuild the config a run recorded (resume/resume_run.py, resume/rerun.py, resume/fork.py);
`resume=auto`, and a cluster job that may be a requeue of itself, look for the job's own run
first (resume/auto.py). The command line (cli.py), a sweep's jobs and the Python API all come through `run_one`.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from trainlab import collector
from trainlab.config.checkpoint import CLUSTER_JOB_TAG, JOB_KEY_TAG, cluster_job_id, job_key
from trainlab.config.checks import check_config
from trainlab.config.schema import TrainConfig, job_identity
from trainlab.data.file_checks import check_source
from trainlab.engines.ranks import is_tracking_process
from trainlab.job_result import JobResult
from trainlab.paths import default_artifact_root, output_dir, task_overrides, tracking_uri
from trainlab.resume.auto import AUTO, auto_resume, wants_auto_resume
from trainlab.resume.rerun import plan_rerun
from trainlab.sweeps.state import SweepJob
from trainlab.tracking.connection import RecorderConnection, TrackingTarget
from trainlab.tracking.messages import EndStatus
from trainlab.tracking.recorders import private_recorder, warm_for
from trainlab.tracking.store_checks import absolute_uri, check_store, sqlite_path

if TYPE_CHECKING:
    from trainlab.engines.base import ResumePoint


def run_one(cfg: DictConfig, job: SweepJob | None) -> float:
    """One job (a single run, or one job of a sweep); returns its objective for sweepers."""
    return run_job_result(cfg, job).objective


def run_job_result(cfg: DictConfig, job: SweepJob | None) -> JobResult:
    """One job, and what it came to (the Python API returns it)."""
    resume_from = fork_from = None
    if cfg.get("resume") and cfg.resume != AUTO:
        # Imported only to resume: reading a checkpoint needs torch.
        from trainlab.resume.resume_run import plan_resume_of

        cfg, resume_from = plan_resume_of(cfg, output_dir())
    else:
        rerun = OmegaConf.select(cfg, "rerun.run") is not None
        if rerun:
            cfg = rerun_config(cfg, job)
        if cfg.get("fork") is not None:  # a rerun of a fork forks again, from the same step
            cfg, fork_from = fork_config(cfg, job, merge=not rerun)
    settings = check_config(cfg)
    check_source(settings.data)
    target = tracking_target(settings, job)
    continued_sweep = job is not None and job.sweep.resumed
    enabled = settings.tracking.enabled
    if resume_from is None and wants_auto_resume(settings.resume, enabled, continued_sweep):
        found = auto_resume(
            job_target(settings, job), settings.resume, continued_sweep, output_dir()
        )
        if found is not None and found[1] is None:  # a requeue (or a continued sweep's job)
            state = found[0]
            print(f"Run {state.run_id} of this job already ended {state.status}; not trained again")
            done = state.objective is not None and state.status == EndStatus.FINISHED.value
            return JobResult(objective=state.objective if done else float("nan"))
        resume_from = found[1] if found is not None else None
    return import_pipeline().run(settings, target, resume_from or fork_from)


def import_pipeline() -> ModuleType:
    """Imported now, not at the top: torch and Lightning take seconds, the checks do not. The
    first time with the collector paused (trainlab/collector.py); a later job of the same process
    finds it imported and its own objects are never frozen."""
    if "trainlab.pipeline" in sys.modules:
        return sys.modules["trainlab.pipeline"]
    with collector.paused():
        return importlib.import_module("trainlab.pipeline")


def tracking_target(settings: TrainConfig, job: SweepJob | None) -> TrackingTarget | None:
    """Where this job's run goes; None when untracked (or a DDP rank that does not track)."""
    if not settings.tracking.enabled or not is_tracking_process(settings.device):
        return None
    return job_target(settings, job)


def job_target(settings: TrainConfig, job: SweepJob | None) -> TrackingTarget:
    """The job's run's store and experiment, tagged with what `resume=auto` looks it up by."""
    sweep = (job.sweep.sweep_dir, job.num) if job is not None else (None, None)
    tags = {JOB_KEY_TAG: job_key(job_identity(settings), *sweep)}
    cluster_job = cluster_job_id()
    if cluster_job is not None:
        tags[CLUSTER_JOB_TAG] = cluster_job
    if job is not None:
        target = job.target(settings.run_name)
        return dataclasses.replace(target, tags={**target.tags, **tags})
    uri = absolute_uri(settings.tracking.uri or tracking_uri())
    check_store(uri)
    recorder = private_recorder(uri, warm_for(settings.tracking))
    root = str(default_artifact_root()) if sqlite_path(uri) else None
    return TrackingTarget(
        recorder=recorder,
        uri=uri,
        experiment_name=settings.experiment_name,
        run_name=settings.run_name,
        tags=tags,
        artifact_root=root,
    )


def rerun_config(cfg: DictConfig, job: SweepJob | None) -> DictConfig:
    """`rerun=<id>`: that run's recorded config with this command's overrides on top, read from
    the sweep's store by its recorder for a sweep's job, else from the run's own store."""
    recorder, uri = recorder_for(cfg, job)
    return plan_rerun(cfg, uri, task_overrides(), recorder, output_dir())


def fork_config(
    cfg: DictConfig, job: SweepJob | None, merge: bool
) -> tuple[DictConfig, ResumePoint]:
    """`fork=<id>[@<step>]`: the fork's config and the checkpoint its fit starts from, read
    where a rerun's are (resume/fork.py)."""
    from trainlab.resume.fork import plan_fork  # reading a checkpoint needs torch

    recorder, uri = recorder_for(cfg, job)
    return plan_fork(cfg, uri, task_overrides(), recorder, output_dir(), merge)


def recorder_for(cfg: DictConfig, job: SweepJob | None) -> tuple[RecorderConnection, str]:
    """Who reads a recorded run: the sweep's recorder for a sweep's job, else this process's."""
    if job is not None:
        target = job.target(None)
        return target.recorder, target.uri
    uri = absolute_uri(cfg.tracking.uri or tracking_uri())
    check_store(uri)
    return private_recorder(uri, warm_for(cfg.tracking)), uri
