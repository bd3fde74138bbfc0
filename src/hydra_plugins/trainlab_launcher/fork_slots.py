"""The `parallel` launcher's slots: each job in a process of its own, forked from the launching one.

A slot is one job at a time; a job that ends frees its slot and the next job starts in a new
fork at once (no batch waits for its slowest job). A job whose process dies (SIGKILL, the
kernel's OOM killer) comes back as a `DiedJob`: its slot is freed, the other jobs go on, and
whoever launched it decides what that job is (its run was ended KILLED by the recorder when
the process's connection dropped, so the same sweep run again continues it).

With `gpus_per_job=K`, each slot owns K devices: a job's process sees only its slot's
(CUDA_VISIBLE_DEVICES), so at most devices // K jobs run at once.

Imports nothing of trainlab (Hydra scans this package at every start).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from trainlab.signals import ask_to_stop

log = logging.getLogger(__name__)

ORPHAN_CHECK_SECONDS = 0.5
# How long a job that sent its result may take to exit before its slot goes to the next job
# (multiprocessing reaps it later).
EXIT_WAIT_SECONDS = 30.0
DEVICES_ENV = "CUDA_VISIBLE_DEVICES"
JOB_DEVICES_ENV = "TRAINLAB_JOB_DEVICES"  # the slot's devices, for the job's run (tag)
# In a job's process: a job runs now; a stop was asked (SIGINT before the job's handler).
_worker: dict[str, bool] = {"running": False, "stopping": False}


class DiedJob(JobReturn):
    """The return of a job whose process died without a word: its objective is NaN (a
    sweeper that reads it goes on), `worker_died` says how it died."""

    worker_died: str = ""


@dataclass
class _Running:
    number: int
    overrides: list[str]
    process: Any  # multiprocessing.Process
    reader: Connection
    devices: str | None


class Slots:
    """Up to `size` jobs at once, each in a fresh fork; `devices`: one CUDA_VISIBLE_DEVICES
    value per slot (None: jobs see what the launching process sees)."""

    def __init__(
        self,
        size: int,
        run: Callable[[list[str], int], JobReturn],
        devices: Sequence[str] | None = None,
    ) -> None:
        self.size = size if devices is None else min(size, len(devices))
        self.run = run  # in the job's process: overrides, number -> its JobReturn
        self.devices = list(devices) if devices is not None else None
        self.running: dict[Connection, _Running] = {}
        self.context = multiprocessing.get_context("fork")
        # Ctrl-C in the launching process raises KeyboardInterrupt wherever it is; raised inside
        # a finalizer (a garbage-collected object's __del__), Python prints and drops it, and the
        # sweep would go on. The signal is also kept here, and the wait for jobs checks it.
        self.stop_asked: int | None = None
        self.previous_handler: Any = None
        if threading.current_thread() is threading.main_thread():
            self.previous_handler = signal.signal(signal.SIGINT, self._interrupted)

    def _interrupted(self, signum: int, frame: Any) -> None:
        self.stop_asked = signum
        raise KeyboardInterrupt

    def close(self) -> None:
        """The launching process's Ctrl-C handler as it was before these slots."""
        if self.previous_handler is not None:
            signal.signal(signal.SIGINT, self.previous_handler)
            self.previous_handler = None

    @property
    def free(self) -> int:
        return self.size - len(self.running)

    def start(self, overrides: Sequence[str], number: int) -> None:
        assert self.free > 0, "no free slot"
        devices = None
        if self.devices is not None:
            taken = {r.devices for r in self.running.values()}
            devices = next(d for d in self.devices if d not in taken)
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_job_process,
            args=(self.run, list(overrides), number, os.getpid(), writer, devices),
            name=f"trainlab-job-{number}",
        )
        process.start()
        writer.close()  # the job's end of the pipe only: EOF here when its process is gone
        self.running[reader] = _Running(number, list(overrides), process, reader, devices)

    def next_done(self) -> tuple[int, JobReturn]:
        """The next job to end (its number and return), waiting for it."""
        assert self.running, "no job runs"
        while True:
            if self.stop_asked is not None:  # a Ctrl-C whose KeyboardInterrupt was dropped
                raise KeyboardInterrupt
            for reader in wait(list(self.running), timeout=ORPHAN_CHECK_SECONDS):
                return self._collect(reader)

    def _collect(self, reader: Connection) -> tuple[int, JobReturn]:
        job = self.running.pop(reader)
        try:
            returned: JobReturn = _received(reader.recv())
        except (EOFError, OSError):
            returned = None  # type: ignore[assignment]
        reader.close()
        job.process.join(timeout=None if returned is None else EXIT_WAIT_SECONDS)
        if returned is None:
            returned = _died(job, job.process.exitcode)
        return job.number, returned

    def stop(self) -> None:
        """Ctrl-C, SIGTERM in the launching process: each job stops at its next step with a
        checkpoint (as Ctrl-C stops a run); wait for them."""
        for job in self.running.values():
            if job.process.pid is not None and job.process.is_alive():
                os.kill(job.process.pid, signal.SIGINT)
        for job in self.running.values():
            job.process.join()
            job.reader.close()
        self.running.clear()


def _died(job: _Running, exitcode: int | None) -> DiedJob:
    how = (
        f"signal {signal.Signals(-exitcode).name}"
        if exitcode is not None and exitcode < 0
        else f"exit status {exitcode}"
    )
    log.warning(
        f"job #{job.number} ({' '.join(job.overrides)}): its process died ({how}); the other "
        "jobs go on, and the same command continues it"
    )
    died = DiedJob(overrides=job.overrides, status=JobStatus.COMPLETED, _return_value=math.nan)
    died.worker_died = how
    return died


def _job_process(
    run: Callable[[list[str], int], JobReturn],
    overrides: list[str],
    number: int,
    launcher_pid: int,
    writer: Connection,
    devices: str | None,
) -> None:
    """A job's own process, in a process group of its own: a terminal's Ctrl-C reaches the
    launching process only, which passes one SIGINT on (a second one would end a run without
    its checkpoint). A watcher notices the launching process's end."""
    os.setpgrp()
    signal.signal(signal.SIGINT, _stop_asked)
    signal.signal(signal.SIGTERM, _stop_asked)
    if devices is not None:
        os.environ[DEVICES_ENV] = os.environ[JOB_DEVICES_ENV] = devices
    threading.Thread(target=_watch_launcher, args=(launcher_pid,), daemon=True).start()
    _worker["running"] = True
    try:
        if _worker["stopping"]:
            raise KeyboardInterrupt("the sweep is stopping")
        returned = _portable(run(overrides, number))
    except BaseException as err:  # stopped before its job's own handlers were in place
        returned = JobReturn(overrides=overrides, status=JobStatus.FAILED)
        returned.return_value = RuntimeError(f"{type(err).__name__}: {err}")
    finally:
        _worker["running"] = False
    writer.send(returned)
    writer.close()


def _stop_asked(signum: int, frame: Any) -> None:
    _worker["stopping"] = True
    if _worker["running"]:  # the job's run takes it as received once it handles signals
        ask_to_stop(signum)


def _watch_launcher(launcher_pid: int) -> None:
    while os.getppid() == launcher_pid:
        time.sleep(ORPHAN_CHECK_SECONDS)
    _worker["stopping"] = True
    if _worker["running"]:
        os.kill(os.getpid(), signal.SIGINT)  # the job stops at its next step, with a checkpoint
    while _worker["running"]:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(0)  # nobody will read its result any more


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
