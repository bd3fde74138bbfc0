"""The trainer's side of tracking: a connection to a recorder process and the run it records.

Why a separate process: MLflow's SQLite store costs ~3.5 ms per `log_batch` and holds Python's GIL
while it writes (a writer thread was measured and did not help), and importing MLflow's SQL store
costs ~2 s. The recorder process (tracking/recorder.py) imports MLflow and opens the store while
the trainer imports torch and Lightning, and writes while the trainer trains; the training loop
only hands rows over (a pickled array through a Unix socket, every `flush_every_seconds`).

Nothing is lost: every message is handled in order; `finish` waits until the run's metrics,
artifacts, plots, model and status are in the store; a recorder that dies makes the next
hand-over raise `RecorderError` (one line), and a trainer that dies leaves the recorder to end
its run KILLED with everything it was handed.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.tracking import protocol as msg
from trainlab.tracking.protocol import Address, FinalReport, RunInfo, RunSpec, RunStart

CONNECT_SECONDS = 60.0  # a recorder that has not started listening by then is reported
MAX_PENDING_METRICS = 4000  # rows are also handed over when this many values wait


class RecorderError(RuntimeError):
    """The recorder process failed or stopped; the message is the one line shown."""


@dataclass(frozen=True)
class Launch:
    """What a new recorder process is told on its standard input."""

    address: Address
    owner_pid: int  # it exits when this process is gone and no connection is left
    store_uri: str | None  # opened (tables created) right away, while the trainer imports torch
    warm: tuple[str, ...]  # modules to import before the first message: what finish will need


class Recorder:
    """One connection to a recorder process: the private one this process started, or the one
    a sweep's main process hosts for all its local jobs."""

    def __init__(self, address: Address, process: subprocess.Popen | None = None) -> None:
        self.address = address
        self.process = process
        self._conn: Connection | None = None

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

    def send(self, kind: str, token: str, payload: Any = None, reply: str | None = None) -> Any:
        """Hand a message over; with `reply` ("handled" or "queued") wait for the answer."""
        try:
            conn = self._connection()
            # Plain pickle, not Connection.send: multiprocessing's pickler would hand torch
            # tensors over as shared memory through a helper thread; a copy is what we want.
            conn.send_bytes(pickle.dumps((kind, token, payload, reply), pickle.HIGHEST_PROTOCOL))
            if reply is None:
                return None
            status, result = pickle.loads(conn.recv_bytes())
        except (OSError, EOFError) as err:
            raise self._stopped(err) from None
        if status == "error":
            raise RecorderError(result)
        return result

    def _stopped(self, err: BaseException | None = None) -> RecorderError:
        self._conn = None
        code = self.process.poll() if self.process is not None else None
        how = f" (exit status {code})" if code is not None else ""
        cause = f": {err}" if err is not None and code is None else ""
        return RecorderError(
            f"the recorder process stopped{how}{cause}; what it had written is in the store, "
            "the rest of this run is not"
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def start_recorder(store_uri: str | None = None, warm: Sequence[str] = ()) -> Recorder:
    """Start a recorder process for this process's runs (it listens at once, then imports MLflow
    and opens `store_uri`, then imports `warm`); connecting happens on the first message."""
    folder = tempfile.mkdtemp(prefix="trainlab-recorder-")  # mode 700: this user's only
    address = Address(socket.gethostname(), str(Path(folder) / "socket"), os.urandom(32))
    process = subprocess.Popen(
        [sys.executable, "-m", "trainlab.tracking.recorder"],
        stdin=subprocess.PIPE,
        # Its own process group: a Ctrl-C in the terminal reaches the trainer, which stops at a
        # step boundary and ends the run; the recorder must live on to write that ending.
        start_new_session=True,
    )
    assert process.stdin is not None
    process.stdin.write(pickle.dumps(Launch(address, os.getpid(), store_uri, tuple(warm))))
    process.stdin.close()
    return Recorder(address, process)


def warm_for(tracking: Any) -> list[str]:
    """What a recorder should import ahead for runs with these tracking settings."""
    wanted = (("plots", tracking.plots), ("model", tracking.log_model))
    return [name for name, enabled in wanted if enabled]


_private: tuple[tuple[tuple[str, str], ...], Recorder] | None = None


def _recorder_environment() -> tuple[tuple[str, str], ...]:
    """What a recorder reads from its environment: MLflow's settings and credentials (every
    path it writes to comes with the messages)."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("MLFLOW_")))


def private_recorder(store_uri: str | None = None, warm: Sequence[str] = ()) -> Recorder:
    """This process's own recorder, started on first use and kept for the runs that follow (a
    serial sweep's jobs, tests); a new one when it stopped or its environment changed."""
    global _private
    environment = _recorder_environment()
    if _private is not None:
        started_with, recorder = _private
        alive = recorder.process is None or recorder.process.poll() is None
        if alive and started_with == environment:
            return recorder
        if alive:
            recorder.send(msg.SHUTDOWN, "")  # it exits once this connection closes
        recorder.close()
    recorder = start_recorder(store_uri, warm)
    _private = (environment, recorder)
    return recorder


_shared: dict[Address, Recorder] = {}


def shared_recorder(address: Address) -> Recorder:
    """A connection (one per process) to the recorder a sweep's main process hosts: its own
    private recorder when this process is that main process (the basic launcher)."""
    if _private is not None and _private[1].address == address:
        return _private[1]
    if address not in _shared:
        _shared[address] = Recorder(address)
    return _shared[address]


class TrackedRun:
    """One MLflow run, recorded by a recorder process; implements engines.base.RunRecorder.

    Rows wait in memory (a tensor row stays on its device) and are handed over every
    `flush_seconds`, when MAX_PENDING_METRICS values wait, and whenever the run ends.
    """

    def __init__(self, recorder: Recorder, spec: RunSpec, flush_seconds: float) -> None:
        self.recorder, self.spec, self.flush_seconds = recorder, spec, flush_seconds
        self.token = uuid.uuid4().hex
        self._info: RunInfo | None = None
        self._pending: dict[tuple[str, ...], list[tuple[int, int, Any]]] = {}
        self._count = 0
        self._next_flush = time.monotonic() + flush_seconds
        self._attached = False  # a copy in another process (a ddp_spawn rank)
        recorder.send(msg.OPEN, self.token, spec)

    # ------------------------------------------------------------------ what training calls
    @property
    def run_id(self) -> str:
        return self.info().run_id

    def info(self) -> RunInfo:
        if self._info is None:
            self._info = self.recorder.send(msg.INFO, self.token, reply="handled")
        return self._info

    def add(self, keys: Sequence[str], values: Any, step: int) -> None:
        row = (step, int(time.time() * 1000), values)
        bucket = self._pending.get(tuple(keys))
        if bucket is None:
            bucket = self._pending[tuple(keys)] = []
        bucket.append(row)
        self._count += len(keys)
        if self._count >= MAX_PENDING_METRICS or time.monotonic() >= self._next_flush:
            self.flush()

    def flush(self) -> None:
        pending, self._pending, self._count = self._pending, {}, 0
        self._next_flush = time.monotonic() + self.flush_seconds
        for keys, rows in pending.items():
            self.recorder.send(msg.ROWS, self.token, as_rows(keys, rows))
        if self._attached:
            # A ddp_spawn rank's rows must be handled before the job's process ends the run.
            self.recorder.send(msg.SYNC, self.token, reply="handled")

    def commit(self, step: int, staged: Path, last: Path, best: tuple, tags: dict) -> None:
        """Hand the rows over, then the checkpoint that makes them durable (commits.py)."""
        self.flush()
        self.recorder.send(
            msg.COMMIT, self.token, msg.Commit(step, str(staged), str(last), *best, tags)
        )

    def sync(self) -> None:  # returns once everything sent so far is handled (a commit too)
        self.recorder.send(msg.SYNC, self.token, reply="handled")

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.recorder.send(msg.TAGS, self.token, {k: str(v) for k, v in tags.items()})

    def log_artifact(self, local_path: Path, artifact_path: str) -> None:
        self.flush()
        self.recorder.send(msg.ARTIFACT, self.token, (str(local_path), artifact_path), "handled")

    # ------------------------------------------------------------------ what the pipeline calls
    def start(self, start: RunStart) -> None:
        self.recorder.send(msg.START, self.token, start)

    def finish(self, report: FinalReport, wait: str = "handled") -> RunInfo | None:
        """End the run; `wait="queued"` returns once the recorder has it (a sweep job goes on
        while its plots and model are written), "handled" once all of it is in the store."""
        self.flush()
        info = self.recorder.send(msg.FINISH, self.token, report, wait)
        if wait == "handled":
            self._info = info
        return info

    # A ddp_spawn job pickles its callbacks into every rank: the run travels as the recorder's
    # address and the run's token, and rank 0 hands its rows over on a connection of its own.
    def __getstate__(self) -> dict[str, Any]:
        return {"address": self.recorder.address, "token": self.token, "spec": self.spec,
                "flush_seconds": self.flush_seconds, "info": self._info}  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.recorder = Recorder(state["address"])
        self.spec, self.flush_seconds = state["spec"], state["flush_seconds"]
        self.token, self._info = state["token"], state["info"]
        self._pending, self._count = {}, 0
        self._next_flush = time.monotonic() + self.flush_seconds
        self._attached = True


def as_rows(keys: tuple[str, ...], rows: list[tuple[int, int, Any]]) -> msg.Rows:
    """Rows of one key set as arrays: one device-to-host copy for all tensor rows."""
    steps = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    times = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    values = [r[2] for r in rows]
    if all(hasattr(v, "detach") for v in values):  # torch tensors, possibly on a GPU
        import torch  # already imported by whoever made tensor rows

        array = torch.stack([v.reshape(-1) for v in values]).double().cpu().numpy()
    else:
        array = np.array(
            [v.detach().cpu().tolist() if hasattr(v, "detach") else v for v in values],
            dtype=np.float64,
        )
    return msg.Rows(keys, steps, times, array.reshape(len(rows), len(keys)))


@dataclass(frozen=True)
class TrackingTarget:
    """Where a job's run goes, decided by whoever starts the job (a single run, a sweep job)."""

    recorder: Recorder
    uri: str
    experiment_name: str
    run_name: str | None
    tags: dict[str, str]  # the caller's tags (a sweep job's); the pipeline adds its own
    artifact_root: str | None = None
    sweep_token: str | None = None
    # "handled": the job returns once its run is in the store (a single run); "queued": once the
    # recorder has it (a sweep job: its plots and model are written while the next job trains).
    wait: str = "handled"
    # A sweep job that fails before its run exists still gets a (FAILED) run, for the summary.
    record_early_failure: bool = False
