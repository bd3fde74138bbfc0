"""The schema of periodic checkpoints (`checkpoint.*`) and of what identifies a job for
`resume=auto` (no torch, no MLflow here: the entry computes the job key before heavy imports).

Why 60 s and not the 5 minutes other tools use: a run's metrics reach MLflow only together with
a checkpoint (recorder/commits.py), so the interval is also how often the dashboard moves. A
checkpoint of the models trainlab trains takes milliseconds; a model large enough for 60 s to
matter can set `checkpoint.every_seconds=300`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from trainlab.config.flat import flatten
from trainlab.errors import require

MODES = ("min", "max")


@dataclass
class CheckpointConfig:
    # A checkpoint falls due this long after the last one (null: never by time) ...
    every_seconds: float | None = 60.0
    # ... or after this many optimizer steps (null: never by steps). Both null: only the
    # checkpoint at the end of the fit (and at a signal), and metrics are not held back.
    every_n_steps: int | None = None
    # A due checkpoint waits for the end of the epoch (so that a resume starts at an epoch
    # boundary) unless the rest of the epoch is longer than one interval.
    save_top_k: int = 1  # best-1.ckpt .. best-k.ckpt by `monitor`; 0: keep only last.ckpt
    monitor: str | None = None  # null: val/loss when there is validation data, else train/loss
    mode: str = "min"  # min | max: which end of `monitor` is best

    def __post_init__(self) -> None:
        if self.every_seconds is not None:
            every = self.every_seconds
            require(every > 0, "checkpoint.every_seconds", every, "seconds > 0, or null")
        if self.every_n_steps is not None:
            steps = self.every_n_steps
            require(steps > 0, "checkpoint.every_n_steps", steps, "an integer > 0, or null")
        k = self.save_top_k
        require(k >= 0, "checkpoint.save_top_k", k, "an integer >= 0 (0: only last.ckpt)")
        require(self.mode in MODES, "checkpoint.mode", self.mode, "min or max")
        if self.monitor is not None:
            ok = bool(self.monitor.strip())
            require(ok, "checkpoint.monitor", self.monitor, "a metric name, or null")

    @property
    def periodic(self) -> bool:
        return self.every_seconds is not None or self.every_n_steps is not None


# What a resumed run may change: how long it trains, how it reports and checkpoints, never what
# it trains. The job key leaves them out, so `resume=auto max_epochs=200` finds the same job.
RESUMABLE_KEYS = (
    "max_epochs",
    "max_steps",
    "print_every",
    "engine.progress_bar",
    "guard.nonfinite",
    "guard.check_every",
    "tracking.uri",
    "tracking.flush_every_seconds",
    "checkpoint.every_seconds",
    "checkpoint.every_n_steps",
)
# `sweep.resume` only says which sweep a job belongs to (its folder and number are in the key).
NOT_IN_KEY = (*RESUMABLE_KEYS, "resume", "run_name", "tags", "sweep.resume")

JOB_KEY_TAG = "trainlab.job_key"
CLUSTER_JOB_TAG = "trainlab.cluster_job"


def job_key(resolved: dict[str, Any], sweep_dir: str | None, job_num: int | None) -> str:
    """Same config (what is trained), same job of the same sweep -> same key."""
    trained = {k: v for k, v in flatten(resolved).items() if k not in NOT_IN_KEY}
    trained = {k: v for k, v in trained.items() if not k.startswith(("tags.", "resume"))}
    identity = {"config": trained, "sweep": sweep_dir, "job": job_num}
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cluster_job_id() -> str | None:
    """The cluster job this process runs in, the same across its requeues: SLURM's job id
    (array job and task for arrays), submitit's local job id; None outside a cluster job."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"slurm:{array}_{task}"
    if os.environ.get("SLURM_JOB_ID"):
        return f"slurm:{os.environ['SLURM_JOB_ID']}"
    if os.environ.get("SUBMITIT_LOCAL_JOB_ID"):
        return f"local:{os.environ['SUBMITIT_LOCAL_JOB_ID']}"
    return None
