"""`hydra/launcher=parallel`: N jobs at once in worker processes forked from the launching one.

It lives in `hydra_plugins`, where Hydra looks for launchers, and imports nothing of trainlab.

Why not Hydra's joblib launcher: it hard-codes joblib's loky backend, whose workers are fresh
Python processes that import torch, Lightning and trainlab again (~5 s of CPU each, measured
here), so on a small machine a parallel sweep of short jobs was slower than a serial one. Forked
workers inherit what the launching process has imported (sweeps/callback.py imports torch and
Lightning there while the sweep's recorder starts) and begin at once.

Each job runs as the joblib launcher runs it, with Hydra's public launcher API: the sweep config
of its overrides, its own HydraConfig, `run_job` in its own job folder. Linux and other systems
where processes fork; the launching process has not touched CUDA (it only imports torch), so a
job may use the GPU.

Stopping: Ctrl-C or SIGTERM in the launching process stops the jobs that run as Ctrl-C stops a
run (SIGINT: at the next step boundary, with a checkpoint, KILLED) and starts no other. A worker
whose launching process is gone (SIGKILL, a login node that dropped it) does the same to its job
and exits, instead of training on and waiting forever for more work: the sweep, run again,
continues those runs from their checkpoints.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)  # the sweep's job list, as Hydra's own launchers print it

# What the forked workers inherit instead of receiving it pickled: the task function is the
# undecorated main, which pickle could not name. Set in the launching process before it forks.
# A worker restoring Hydra's singletons makes Hydra scan its plugins again, which runs this
# module again in the same namespace: what is already there is kept.
_batch: dict[str, Any] = globals().get("_batch", {})
# In a worker: a job runs now; a stop was asked (SIGINT while no job's own handler was in place).
_worker: dict[str, bool] = {"running": False, "stopping": False}
ORPHAN_CHECK_SECONDS = 0.5


class ForkLauncher(Launcher):
    def __init__(self, n_jobs: int = 2) -> None:
        self.n_jobs = n_jobs
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        workers = min(self.n_jobs if self.n_jobs > 0 else os.cpu_count() or 1, len(job_overrides))
        log.info(f"Launching {len(job_overrides)} jobs in {workers} forked worker processes")
        for idx, overrides in enumerate(job_overrides):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        _batch.update(
            context=self.hydra_context,
            config=self.config,
            task=self.task_function,
            singletons=Singleton.get_state(),
            jobs=[list(o) for o in job_overrides],
        )
        numbers = [initial_job_idx + i for i in range(len(job_overrides))]
        fork = multiprocessing.get_context("fork")
        pool = ProcessPoolExecutor(
            workers, mp_context=fork, initializer=_start_worker, initargs=(os.getpid(),)
        )
        try:
            returned = list(pool.map(_run_job, range(len(job_overrides)), numbers))
        except BaseException:  # Ctrl-C, SIGTERM: the running jobs stop at a step, no new one
            for worker in multiprocessing.active_children():
                os.kill(worker.pid, signal.SIGINT)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)
            _batch.clear()
        return [_received(job) for job in returned]


def _start_worker(launcher_pid: int) -> None:
    """A new worker, in a process group of its own: a terminal's Ctrl-C reaches the launching
    process only, which passes one SIGINT on (a second one would end a run without its
    checkpoint). SIGINT between jobs asks it to stop; a watcher notices its launcher's end."""
    os.setpgrp()
    signal.signal(signal.SIGINT, _stop_asked)
    signal.signal(signal.SIGTERM, _stop_asked)
    threading.Thread(target=_watch_launcher, args=(launcher_pid,), daemon=True).start()


def _stop_asked(signum: int, frame: Any) -> None:
    _worker["stopping"] = True


def _watch_launcher(launcher_pid: int) -> None:
    while os.getppid() == launcher_pid:
        time.sleep(ORPHAN_CHECK_SECONDS)
    _worker["stopping"] = True
    if _worker["running"]:
        os.kill(os.getpid(), signal.SIGINT)  # the job stops at its next step, with a checkpoint
    while _worker["running"]:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(0)  # nobody will send work or read results any more


def _run_job(index: int, number: int) -> JobReturn:
    """One job in a forked worker, as Hydra's own launchers run it."""
    if _worker["stopping"]:
        raise KeyboardInterrupt("the sweep is stopping")
    _worker["running"] = True
    try:
        return _run_in_worker(index, number)
    finally:
        _worker["running"] = False


def _run_in_worker(index: int, number: int) -> JobReturn:
    context: HydraContext = _batch["context"]
    config, task, overrides = _batch["config"], _batch["task"], _batch["jobs"][index]
    setup_globals()
    Singleton.set_state(_batch["singletons"])
    sweep_config = context.config_loader.load_sweep_config(config, overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{number}"
        sweep_config.hydra.job.num = number
    HydraConfig.instance().set_config(sweep_config)
    done = run_job(
        hydra_context=context,
        config=sweep_config,
        task_function=task,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    return _portable(done)


def _portable(job: JobReturn) -> JobReturn:
    """The job's return as plain data for the trip back: its configs as containers (their
    structured types belong to this process's re-scanned plugins, which pickle cannot name), a
    failure that pickle cannot carry as a RuntimeError with its message."""
    job.cfg = OmegaConf.to_container(job.cfg) if job.cfg is not None else None
    job.hydra_cfg = OmegaConf.to_container(job.hydra_cfg) if job.hydra_cfg is not None else None
    if job.status == JobStatus.FAILED:
        try:
            pickle.dumps(job._return_value)
        except Exception:
            error = job._return_value
            job._return_value = RuntimeError(f"{type(error).__name__}: {error}")
    return job


def _received(job: JobReturn) -> JobReturn:
    job.cfg = OmegaConf.create(job.cfg) if job.cfg is not None else None
    job.hydra_cfg = OmegaConf.create(job.hydra_cfg) if job.hydra_cfg is not None else None
    return job
