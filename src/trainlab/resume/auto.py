"""`resume=auto`, and a job that may be a continuation of itself (a cluster job requeued, a job
of a continued sweep): when the job looks for its own run, and the run it finds.

The job (job.py) says what it is; this module decides whether to look and asks the recorder for
the job's run by the job key its runs are tagged with (config/checkpoint.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from trainlab.config.checkpoint import CLUSTER_JOB_TAG, JOB_KEY_TAG, cluster_job_id
from trainlab.errors import ConfigError
from trainlab.tracking.connection import TrackingTarget
from trainlab.tracking.messages import ResumeQuery, ResumeState

if TYPE_CHECKING:
    from trainlab.engines.base import ResumePoint

AUTO = "auto"  # resume=auto


def wants_auto_resume(resume: str | None, tracking_enabled: bool, continued_sweep: bool) -> bool:
    """`resume=auto`, a cluster job (SLURM, submitit) that may be a requeue of itself, or a job
    of a continued sweep (its run may have ended, or been killed with a checkpoint)."""
    if resume == AUTO and not tracking_enabled:
        raise ConfigError(
            "resume=auto finds the job's run in MLflow; expected tracking enabled (an untracked "
            "run writes no checkpoint: there is no run to continue)"
        )
    implicit = resume is None and (cluster_job_id() is not None or continued_sweep)
    return resume == AUTO or (implicit and tracking_enabled)


def auto_resume(
    target: TrackingTarget, resume: str | None, continued_sweep: bool, folder: Path
) -> tuple[ResumeState, ResumePoint | None] | None:
    """This job's run to continue (every DDP rank asks; rank 0 opens it), or None. A continued
    sweep's job also finds a run that ended (its result is the job's)."""
    # Imported only when a job looks for its run: reading a checkpoint needs torch.
    from trainlab.resume.resume_run import find_run

    # A lone cluster job continues only a requeue of itself (its cluster job id); a continued
    # sweep submits its jobs anew, with new ids, and its job key alone names the job's run.
    own_requeue = resume is None and not continued_sweep
    cluster_job = target.tags.get(CLUSTER_JOB_TAG) if own_requeue else None
    query = ResumeQuery(
        uri=target.uri,
        experiment_name=target.experiment_name,
        job_key=target.tags[JOB_KEY_TAG],
        cluster_job=cluster_job,
        ended_too=continued_sweep,
    )
    found = find_run(target.recorder, query, folder)
    if found is None and resume == AUTO:
        print("resume=auto: no unfinished run of this job with a checkpoint; a new run")
    return found
