"""`trainlab-train`: compose the config, check it, decide where the run goes, run the pipeline.

trainlab-train experiment=seed_pipeline optimizer=adam optimizer.lr=0.05

The order is the user's wait: composition and every check need no torch, so a wrong value fails
within a second; the recorder process starts next (it imports MLflow and opens the store while
this process imports torch and Lightning); the pipeline comes last. The console script ends the
process with os._exit once everything it owes is durable: unloading torch, Lightning and friends
costs Python 1.5-2 s of shutdown that nobody waits for (measured; FACTS.md).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn

import hydra
from omegaconf import DictConfig, OmegaConf

from trainlab import collector
from trainlab.config.checkpoint import CLUSTER_JOB_TAG, JOB_KEY_TAG, cluster_job_id, job_key
from trainlab.config.checks import check_config
from trainlab.config.schema import TrainConfig, as_plain_dict, register_configs
from trainlab.data.checks import check_source
from trainlab.engines.ranks import is_tracking_process
from trainlab.errors import ConfigError, is_user_error, one_line
from trainlab.paths import (
    CONFIG_DIR,
    default_artifact_root,
    home,
    in_multirun,
    output_dir,
    task_overrides,
    tracking_uri,
    unwritable_reason,
)
from trainlab.process import exit_now
from trainlab.sweeps.callback import end_unfinished_sweep, run_job, sweep_problem
from trainlab.sweeps.state import SweepJob, current_job
from trainlab.tracking.client import TrackingTarget, private_recorder, warm_for
from trainlab.tracking.messages import ResumeQuery, ResumeState
from trainlab.tracking.store import absolute_uri, check_store, sqlite_path

if TYPE_CHECKING:
    from trainlab.engines.base import ResumePoint

register_configs()
AUTO = "auto"  # resume=auto

# Set by main() from the user's own HYDRA_FULL_ERROR before it sets the variable for Hydra.
_show_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"


def fail(err: BaseException) -> NoReturn:
    """Exit 2 with one line on stderr (or re-raise when the user asked for tracebacks)."""
    if _show_traceback:
        raise err
    hint = "" if is_user_error(err) else " (HYDRA_FULL_ERROR=1 shows the traceback)"
    print(f"trainlab-train: error: {one_line(err)}{hint}", file=sys.stderr)
    # SystemExit, not an Exception: Hydra would log its own "Error executing job" line.
    raise SystemExit(2)


def train(cfg: DictConfig, job: SweepJob | None) -> float:
    """One job: checks, then the recorder, then the heavy imports and the pipeline."""
    resume_from = None
    if cfg.get("resume") and cfg.resume != AUTO:
        cfg, resume_from = plan_resume(cfg)
    elif OmegaConf.select(cfg, "rerun.run") is not None:
        cfg = plan_rerun(cfg, job)
    settings = check_config(cfg)
    check_source(settings.data)
    target = tracking_target(settings, job)
    if resume_from is None and wants_auto_resume(settings):
        found = auto_resume(settings, job)
        if found is not None and found[1] is None:  # a requeue of a job that had finished
            print(f"Run {found[0].run_id} of this cluster job already finished; nothing to do")
            return found[0].objective if found[0].objective is not None else float("nan")
        resume_from = found[1] if found is not None else None
    return import_pipeline().run(settings, target, resume_from)


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
    resolved = as_plain_dict(settings)
    sweep = (job.sweep.sweep_dir, job.num) if job is not None else (None, None)
    tags = {JOB_KEY_TAG: job_key(resolved, *sweep)}
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


def wants_auto_resume(settings: TrainConfig) -> bool:
    """`resume=auto`, or a cluster job (SLURM, submitit) that may be a requeue of itself."""
    if settings.resume == AUTO and not settings.tracking.enabled:
        raise ConfigError(
            "resume=auto finds the job's run in MLflow; expected tracking enabled (an untracked "
            "run writes no checkpoint: there is no run to continue)"
        )
    implicit = settings.resume is None and cluster_job_id() is not None
    return settings.resume == AUTO or (implicit and settings.tracking.enabled)


def auto_resume(
    settings: TrainConfig, job: SweepJob | None
) -> tuple[ResumeState, ResumePoint | None] | None:
    """This job's run to continue (every DDP rank asks; rank 0 opens it), or None."""
    from trainlab.tracking.resume import find_run  # reading a checkpoint needs torch

    target = job_target(settings, job)
    cluster_job = target.tags.get(CLUSTER_JOB_TAG) if settings.resume is None else None
    query = ResumeQuery(
        uri=target.uri,
        experiment_name=target.experiment_name,
        job_key=target.tags[JOB_KEY_TAG],
        cluster_job=cluster_job,
    )
    found = find_run(target.recorder, query, output_dir())
    if found is None and settings.resume == AUTO:
        print("resume=auto: no unfinished run of this job with a checkpoint; a new run")
    return found


def plan_resume(cfg: DictConfig) -> tuple:
    # Imported only to resume: reading a checkpoint needs torch.
    from trainlab.tracking.resume import plan_resume as plan

    uri = absolute_uri(cfg.tracking.uri or tracking_uri())
    check_store(uri)
    recorder = private_recorder(uri)
    return plan(str(cfg.resume), uri, task_overrides(), recorder, output_dir())


def plan_rerun(cfg: DictConfig, job: SweepJob | None) -> DictConfig:
    from trainlab.tracking.rerun import plan_rerun as plan

    if job is not None:  # a sweep's job reads the run from the sweep's store, by its recorder
        target = job.target(None)
        recorder, uri = target.recorder, target.uri
    else:
        uri = absolute_uri(cfg.tracking.uri or tracking_uri())
        check_store(uri)
        recorder = private_recorder(uri, warm_for(cfg.tracking))
    return plan(cfg, uri, task_overrides(), recorder, output_dir())


def expand_shorthands(args: list[str]) -> list[str]:
    """`rerun=<run id>` is short for `rerun.run=<run id>` (beside `rerun.verify=true`)."""
    return [f"rerun.run={a[len('rerun=') :]}" if a.startswith("rerun=") else a for a in args]


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _hydra_entry(cfg: DictConfig) -> float:
    if in_multirun():
        # A failing job is recorded and the sweep goes on (sweep.stop_on_failure stops it).
        job = current_job()
        return run_job(lambda c: train(c, job), cfg)
    try:
        return train(cfg, None)
    except Exception as err:
        # Handled here, not by Hydra, which would add its own "Error executing job" line.
        fail(err)


def main() -> int:
    """Hydra's CLI, with every error shown as one line; returns the exit status."""
    global _show_traceback
    _show_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    # Hydra prints its own multi-line report of composition errors unless HYDRA_FULL_ERROR is
    # set; with it set the exception reaches us and becomes one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    absolute_environment()
    try:
        # Hydra writes its job folder under TRAINLAB_HOME first; say so plainly if it cannot.
        reason = unwritable_reason(home())
        if reason is not None:
            raise ConfigError(
                f"TRAINLAB_HOME={str(home())!r}: cannot write there ({reason}); expected a "
                "writable folder for mlflow.db, mlartifacts/ and outputs/"
            )
        sys.argv[1:] = expand_shorthands(sys.argv[1:])
        _hydra_entry()
    except BaseException as err:
        end_unfinished_sweep(err)  # a sweep that raised never leaves its parent run RUNNING
        if isinstance(err, KeyboardInterrupt):
            # The run is already KILLED and the resume hint printed; 130 for Ctrl-C, 143 for
            # SIGTERM.
            return 128 + getattr(err, "signum", 2)
        if isinstance(err, SystemExit):
            return err.code if isinstance(err.code, int) else 1
        return exit_status(err)
    problem = sweep_problem()
    return exit_status(ConfigError(problem)) if problem else 0


def absolute_environment() -> None:
    """TRAINLAB_HOME and a sqlite MLFLOW_TRACKING_URI given relative to this folder, made
    absolute for the processes this one starts (sweep jobs, DDP ranks, recorders), which may
    run from another folder (submitit starts its jobs in the sweep's folder)."""
    if os.environ.get("TRAINLAB_HOME"):
        os.environ["TRAINLAB_HOME"] = str(home())
    if os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = absolute_uri(os.environ["MLFLOW_TRACKING_URI"])


def exit_status(err: BaseException) -> int:
    """Report `err` as fail() does; its exit status."""
    try:
        fail(err)
    except SystemExit as done:
        return int(done.code or 0)


def cli() -> NoReturn:
    """The console script: main(), then exit without unloading the libraries (everything the
    run owes is durable once main() returns: the recorder answered for it)."""
    status = main()
    if "joblib.externals.loky" in sys.modules:
        # A parallel sweep's main process (light: no torch, no MLflow): exit normally, so that
        # joblib's exit handler stops its idle worker processes instead of orphaning them.
        logging.shutdown()  # the job's log file
        sys.exit(status)
    exit_now(status)


if __name__ == "__main__":
    cli()
