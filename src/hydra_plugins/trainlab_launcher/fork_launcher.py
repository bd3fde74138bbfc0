"""`hydra/launcher=parallel`: N jobs at once, each in a process forked from the launching one.

It lives in `hydra_plugins`, where Hydra looks for launchers, and imports nothing of trainlab.

Why not Hydra's joblib launcher: it hard-codes joblib's loky backend, whose workers are fresh
Python processes that import torch, Lightning and trainlab again (~5 s of CPU each, measured
here), so on a small machine a parallel sweep of short jobs was slower than a serial one. Forked
processes inherit what the launching process has imported (sweeps/callback.py imports torch and
Lightning there while the sweep's recorder starts) and begin at once.

Each job runs as the joblib launcher runs it, with Hydra's public launcher API: the sweep config
of its overrides, its own HydraConfig, `run_job` in its own job folder; each in a fresh fork
(fork_slots.py), up to `n_jobs` at once, the next one started as soon as any ends. A job whose
process dies (SIGKILL, out of memory) is said in one line and the others go on; its run, ended
KILLED by the recorder, is continued by the same command later. `gpus_per_job=K` gives each job
its own K devices. Linux and other systems where processes fork; the launching process has not
touched CUDA (it only imports torch), so a job may use the GPU.

Stopping: Ctrl-C or SIGTERM in the launching process stops the jobs that run as Ctrl-C stops a
run (SIGINT: at the next step boundary, with a checkpoint, KILLED) and starts no other. A job
whose launching process is gone (SIGKILL, a login node that dropped it) does the same and exits,
instead of training on for nobody: the sweep, run again, continues those runs from their
checkpoints.

Beyond Hydra's `launch` (a batch, returned when its every job ended), `slots()` lets trainlab's
Optuna sweeper start a trial whenever a slot frees (sweeps/search.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from hydra_plugins.trainlab_launcher.fork_slots import DEVICES_ENV, Slots

log = logging.getLogger(__name__)  # the sweep's job list, as Hydra's own launchers print it

# What the forked jobs inherit instead of receiving it pickled: the task function is the
# undecorated main, which pickle could not name. Set in the launching process before it forks.
# A job restoring Hydra's singletons makes Hydra scan its plugins again, which runs this
# module again in the same namespace: what is already there is kept.
_batch: dict[str, Any] = globals().get("_batch", {})


class ForkLauncher(Launcher):
    def __init__(self, n_jobs: int = 2, gpus_per_job: int = 0) -> None:
        self.n_jobs = n_jobs
        self.gpus_per_job = gpus_per_job
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    @property
    def workers(self) -> int:
        """Jobs at once: n_jobs (-1: one per core), at most devices // gpus_per_job."""
        count = self.n_jobs if self.n_jobs > 0 else os.cpu_count() or 1
        slices = device_slices(self.gpus_per_job)
        return count if slices is None else min(count, len(slices))

    def slots(self, most: int | None = None) -> Slots:
        """Up to `most` (else `workers`) jobs at once; start() each, next_done() as they end."""
        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        _batch.update(
            context=self.hydra_context,
            config=self.config,
            task=self.task_function,
            singletons=Singleton.get_state(),
        )
        size = self.workers if most is None else max(1, min(most, self.workers))
        return Slots(size, _run_in_worker, device_slices(self.gpus_per_job))

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        slots = self.slots(len(job_overrides))
        log.info(f"Launching {len(job_overrides)} jobs, {slots.size} at once in forked processes")
        for idx, overrides in enumerate(job_overrides):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        waiting = list(enumerate(job_overrides, start=initial_job_idx))[::-1]
        returned: dict[int, JobReturn] = {}
        try:
            while waiting or slots.running:
                while waiting and slots.free:
                    number, overrides = waiting.pop()
                    slots.start(overrides, number)
                number, job = slots.next_done()
                returned[number] = job
        except BaseException:  # Ctrl-C, SIGTERM: the running jobs stop at a step, no new one
            slots.stop()
            raise
        finally:
            slots.close()
        return [returned[number] for number in sorted(returned)]


def visible_devices() -> list[str]:
    """The GPUs jobs may use: CUDA_VISIBLE_DEVICES when set, else those nvidia-smi lists
    (without touching CUDA in the launching process, which would break its forks)."""
    given = os.environ.get(DEVICES_ENV)
    if given is not None:
        return [d.strip() for d in given.split(",") if d.strip() and d.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listed = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.splitlines() if line.strip()]


def device_slices(gpus_per_job: int) -> list[str] | None:
    """Each slot's CUDA_VISIBLE_DEVICES with gpus_per_job=K (None for 0: no slicing), or a
    ValueError naming what is wrong."""
    if gpus_per_job == 0:
        return None
    devices = visible_devices()
    if gpus_per_job < 0 or len(devices) < gpus_per_job:
        has = f"{len(devices)} GPUs ({DEVICES_ENV}={','.join(devices)})" if devices else "no GPU"
        allowed = f"0 or at most {len(devices)}" if devices else "0"
        raise ValueError(
            f"hydra.launcher.gpus_per_job={gpus_per_job}: this machine has {has}; expected "
            f"hydra.launcher.gpus_per_job={allowed}"
        )
    k = gpus_per_job
    return [",".join(devices[i : i + k]) for i in range(0, len(devices) - k + 1, k)]


def _run_in_worker(overrides: list[str], number: int) -> JobReturn:
    """One job in its forked process, as Hydra's own launchers run it."""
    context: HydraContext = _batch["context"]
    config, task = _batch["config"], _batch["task"]
    setup_globals()
    Singleton.set_state(_batch["singletons"])
    sweep_config = context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{number}"
        sweep_config.hydra.job.num = number
    HydraConfig.instance().set_config(sweep_config)
    return run_job(
        hydra_context=context,
        config=sweep_config,
        task_function=task,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
