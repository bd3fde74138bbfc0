"""The trainer's side of tracking: a connection to a recorder process (the run it records is
tracking/run.py's TrackedRun; what they say to each other is tracking/messages.py).

Why a separate process: MLflow's SQLite store holds Python's GIL while it writes each `log_batch`
(a writer thread did not help), and importing MLflow's SQL store is slow. The recorder process
(trainlab/recorder/) imports MLflow and opens the store while the trainer imports torch and
Lightning, and writes while the trainer trains; the training loop only hands rows over (a pickled
array through a Unix socket, every `flush_every_seconds`).

Nothing is lost: every message is handled in order; `finish` waits until the run's metrics,
artifacts, plots, model and status are in the store; a run whose recording fails is told at its
next hand-over (the recorder's NOTICE); a recorder that dies makes the next hand-over raise
`RecorderLost`, and the run's trainer starts another (`replace_recorder`; tracking/run.py and
engines/lightning.py continue the run); a trainer that dies leaves the recorder to end its run
KILLED with everything it was handed.

The recorder's standard error is the job's log file when there is one (trainlab/logs.py): MLflow
and SQLAlchemy log their errors with long tracebacks, which the console does not show; the line
the trainer prints says what went wrong.
"""

from __future__ import annotations

import contextlib
import pickle
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection
from typing import Any

from trainlab.errors import ConfigError, RecorderStopped
from trainlab.tracking.messages import (
    NOTICE,
    Address,
    Answer,
    AnswerStatus,
    Envelope,
    Message,
    Reply,
)

CONNECT_SECONDS = 60.0  # a recorder that has not started listening by then is reported


class RecorderError(RuntimeError):
    """The recorder process failed or stopped; the message is the one line shown."""


class RecorderRefused(RecorderError, ConfigError):
    """Refused for a reason the user can fix (a store to repair, a run still RUNNING)."""


class RecorderLost(RecorderError, RecorderStopped):
    """The recorder process is gone (killed, crashed): its connection ended."""


class RecorderConnection:
    """One connection to a recorder process: the private one this process started, or the one
    a sweep's main process hosts for all its local jobs."""

    def __init__(
        self, address: Address, process: subprocess.Popen | None = None, warm: Sequence[str] = ()
    ) -> None:
        self.address = address
        self.process = process
        self.warm = tuple(warm)  # what it imports ahead (a replacement does the same)
        self._conn: Connection | None = None
        self._asked = 0
        self._answers: dict[int, Answer] = {}
        self._notices: dict[str, Answer] = {}  # by run token: its recording failed

    def _connection(self) -> Connection:
        if self._conn is None:
            deadline = time.monotonic() + CONNECT_SECONDS
            while True:
                try:
                    self._conn = Client(self.address.path, "AF_UNIX", authkey=self.address.authkey)
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if self.process is not None and self.process.poll() is not None:
                        raise self._stopped() from None
                    if time.monotonic() > deadline:
                        raise RecorderError(
                            f"the recorder process did not start listening within "
                            f"{CONNECT_SECONDS:.0f} s ({self.address.path})"
                        ) from None
                    time.sleep(0.005)
        return self._conn

    def send(self, message: Message, token: str = "", reply: Reply | None = None) -> Any:
        """Hand a message about run (or sweep) `token` over; with `reply` wait for the answer.
        Without one, raise the run's failure if the recorder has reported one (a full disk)."""
        if reply is None:
            self._write(Envelope(token=token, message=message))
            self._collect()
            notice = self._notices.pop(token, None)
            if notice is not None:
                raise _error(notice)
            return None
        return self.answer(self.ask(message, token, reply))

    def ask(self, message: Message, token: str = "", reply: Reply = Reply.HANDLED) -> int:
        """Send a request without waiting; `answer(number)` collects the answer later."""
        self._asked += 1
        self._write(Envelope(token=token, message=message, reply=reply, number=self._asked))
        return self._asked

    def answer(self, number: int) -> Any:
        """The answer to request `number` (answers may come out of order: QUEUED ones are sent
        as soon as a message arrives, HANDLED ones once it is handled)."""
        try:
            while number not in self._answers:
                self._keep(pickle.loads(self._connection().recv_bytes()))
        except (OSError, EOFError) as err:
            raise self._stopped(err) from None
        answer = self._answers.pop(number)
        if answer.status is not AnswerStatus.OK:
            raise _error(answer)
        return answer.result

    def answered(self, number: int) -> bool:  # whether it has come, without waiting (a poll)
        self._collect()
        return number in self._answers

    def _collect(self) -> None:
        """Keep the answers already there, without waiting (a poll: microseconds)."""
        try:
            while self._conn is not None and self._conn.poll():
                self._keep(pickle.loads(self._conn.recv_bytes()))
        except (OSError, EOFError) as err:
            raise self._stopped(err) from None

    def _keep(self, answer: Answer) -> None:
        if answer.number == NOTICE:
            self._notices[answer.token] = answer
        else:
            self._answers[answer.number] = answer

    def _write(self, envelope: Envelope) -> None:
        try:
            # Plain pickle, not Connection.send: multiprocessing's pickler would hand torch
            # tensors over as shared memory through a helper thread; a copy is what we want.
            self._connection().send_bytes(pickle.dumps(envelope, pickle.HIGHEST_PROTOCOL))
        except (OSError, EOFError) as err:
            raise self._stopped(err) from None

    def _stopped(self, err: BaseException | None = None) -> RecorderLost:
        self._conn = None
        code = None
        if self.process is not None:
            # A process that died has closed its socket a moment before it can be reaped.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=1)
            code = self.process.poll()
        how = f" (exit status {code})" if code is not None else ""
        cause = f": {err}" if err is not None and code is None else ""
        return RecorderLost(f"the recorder process stopped{how}{cause}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stop(self) -> None:
        """Close the connection and make sure the process (ours) is gone."""
        self.close()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _error(answer: Answer) -> RecorderError:
    """A failure the recorder answered: REFUSED ones are the user's to fix (shown like a config
    error, without the traceback hint)."""
    if answer.status is AnswerStatus.REFUSED:
        return RecorderRefused(answer.result)
    return RecorderError(answer.result)


@dataclass(frozen=True)
class TrackingTarget:
    """Where a job's run goes, decided by whoever starts the job (a single run, a sweep job)."""

    recorder: RecorderConnection
    uri: str
    experiment_name: str
    run_name: str | None
    tags: dict[str, str]  # the caller's tags (a sweep job's); the pipeline adds its own
    artifact_root: str | None = None
    sweep_token: str | None = None
    # HANDLED: the job returns once its run is in the store (a single run); QUEUED: once the
    # recorder has it (a sweep job: its plots and model are written while the next job trains).
    wait: Reply = Reply.HANDLED
    # A sweep job that fails before its run exists still gets a (FAILED) run, for the summary.
    open_run_on_early_failure: bool = False
