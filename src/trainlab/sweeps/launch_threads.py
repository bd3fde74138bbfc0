"""Asynchronous trials over a launcher that launches batches: each slot is a thread that hands
the launcher a batch of one job through its own `launch` (Hydra's launcher API) and waits.

For Hydra's submitit launchers (`hydra/launcher=submitit_local`, `submitit_slurm`): each job is
a process or a cluster job of its own and `launch` only waits for its result, so with a thread
per slot a trial is asked as soon as any job ends instead of when a batch's slowest does, and the
launcher does everything as it does for a batch (its executor, folders, job numbers, requeues).
The threads are daemons: a sweep stopped by Ctrl-C or SIGTERM leaves its submitted jobs as
a stopped batch leaves them (submitit's own processes, or the cluster's jobs).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

WAKE_SECONDS = 0.5  # how often the wait for a job looks up (a Ctrl-C is raised there)


class LaunchThreads:
    """Up to `size` jobs at once, each a batch of one launched in a thread of its own."""

    def __init__(self, launcher: Launcher, size: int) -> None:
        self.launcher, self.size = launcher, size
        self.running: set[int] = set()
        self.ended: queue.Queue[tuple[int, JobReturn | BaseException]] = queue.Queue()

    @property
    def free(self) -> int:
        return self.size - len(self.running)

    def start(self, overrides: Sequence[str], number: int) -> None:
        assert self.free > 0, "no free slot"
        self.running.add(number)
        threading.Thread(
            target=self._launch,
            args=(list(overrides), number),
            name=f"trainlab-job-{number}",
            daemon=True,
        ).start()

    def _launch(self, overrides: list[str], number: int) -> None:
        try:
            returned: JobReturn | BaseException = self.launcher.launch(
                [overrides], initial_job_idx=number
            )[0]
        except BaseException as err:  # the launcher's own failure: raised where it is waited for
            returned = err
        self.ended.put((number, returned))

    def next_done(self) -> tuple[int, JobReturn]:
        """The next job to end (its number and return), waiting for it."""
        assert self.running, "no job runs"
        while True:
            try:
                number, returned = self.ended.get(timeout=WAKE_SECONDS)
                break
            except queue.Empty:
                continue
        self.running.discard(number)
        if isinstance(returned, BaseException):
            raise returned
        return number, returned

    def stop(self) -> None:
        """Ctrl-C, SIGTERM: no new job; those submitted are the launcher's, as in a batch."""
        self.running.clear()

    def close(self) -> None:
        pass


def thread_slots(launcher: Launcher, size: int) -> LaunchThreads | None:
    """Slots of threads for a launcher whose jobs run in processes of their own (Hydra's
    submitit launchers); None for the others, whose jobs may share the sweep's process."""
    return LaunchThreads(launcher, size) if isinstance(launcher, BaseSubmititLauncher) else None
