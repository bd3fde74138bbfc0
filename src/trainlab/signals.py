"""Ctrl-C, SIGTERM and a cluster's USR2: stop at the next step boundary, keep everything, exit
KILLED with a checkpoint.

Why not Lightning's own handling: on Ctrl-C it raises KeyboardInterrupt wherever the program is
(possibly between an optimizer step and the callback that logs it, or inside a store write) and
then ignores further Ctrl-C; on SIGTERM it raises SystemExit from inside the epoch. Here the
first signal only sets a flag while the Trainer runs; the engines' step callback turns it into
`trainer.should_stop` after the step's metrics are buffered, so the fit ends as cleanly as at
`max_steps` (checkpoint included), and the pipeline then ends the run KILLED. Outside the fit the
first signal raises KeyboardInterrupt at once. A second signal exits the process immediately.

USR2 is how submitit (and SLURM's `--signal`) announces a preemption or the time limit. Whoever
handled it before (submitit's requeue) is called once the run has ended KILLED with its
checkpoint: it requeues the job, and the requeued job resumes the run (resume=auto).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
PREEMPTION = signal.SIGUSR2  # submitit's default (SUBMITIT_PREEMPT_SIGNAL)
# Signals that came before this process's run handled them (a parallel sweep's job that was
# still starting when the sweep stopped): its handlers take them as received.
_pending: list[int] = []


def ask_to_stop(signum: int) -> None:
    """A stop asked of this process before `handle_interrupts` took the signals over."""
    _pending.append(signum)


class Interrupted(KeyboardInterrupt):
    """The run stopped for a signal; the process exits 128 + its number (130, 143)."""

    def __init__(
        self, signum: int, steps: int | None = None, checkpoint: Path | None = None
    ) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.name = signum, signal.Signals(signum).name
        self.steps, self.checkpoint = steps, checkpoint  # where the fit stopped, when it did


class Interrupts:
    """The signal handler's state: which signal came first, and whether the Trainer is running."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.deferred = False  # True while a step boundary is near (inside trainer.fit)

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            print(
                f"\ntrainlab-train: second {signal.Signals(signum).name}: exiting now, without "
                "saving (the run may stay RUNNING in MLflow)",
                file=sys.stderr,
                flush=True,
            )
            os._exit(128 + signum)
        self.received = signum
        print(
            f"\n{self.name} received: stopping after this step; press Ctrl-C again to exit at once",
            file=sys.stderr,
            flush=True,
        )
        if not self.deferred:
            raise Interrupted(signum)

    def install(self) -> None:
        for signum in HANDLED:
            signal.signal(signum, self.handle)

    def raise_if_received(self, steps: int | None = None, checkpoint: Path | None = None) -> None:
        """After a fit that stopped early for a signal: end the run as interrupted."""
        if self.received is not None:
            raise Interrupted(self.received, steps, checkpoint)


@contextmanager
def handle_interrupts() -> Iterator[Interrupts]:
    """Install the handlers for the block (main thread only), restore the previous ones after."""
    interrupts = Interrupts()
    if not in_main_thread():
        yield interrupts
        return
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    interrupts.install()
    try:
        if _pending:  # before the run opens: it stops here, with nothing made
            interrupts.handle(_pending.pop(), None)
        yield interrupts
    except Interrupted as err:
        handler = previous.get(err.signum)
        if err.signum != PREEMPTION or not callable(handler):
            raise
        _restore(previous)
        handler(err.signum, None)  # submitit: checkpoint the job, requeue it, SystemExit
        raise
    finally:
        _restore(previous)


def _restore(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
