"""Which recorder process this process's runs go to: its private one, started on first use and
replaced when it stops, or the one a sweep's main process hosts for its local jobs
(tracking/connection.py is what is said over a connection to either)."""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainlab.logs import job_log_file
from trainlab.tracking.connection import RecorderConnection
from trainlab.tracking.messages import Address, Launch, Shutdown


def start_recorder(store_uri: str | None = None, warm: Sequence[str] = ()) -> RecorderConnection:
    """Start a recorder process for this process's runs (it listens at once, then imports MLflow
    and opens `store_uri`, then imports `warm`); connecting happens on the first message."""
    folder = tempfile.mkdtemp(prefix="trainlab-recorder-")  # mode 700: this user's only
    address = Address(socket.gethostname(), str(Path(folder) / "socket"), os.urandom(32))
    log = _open_log()
    process = subprocess.Popen(
        [sys.executable, "-m", "trainlab.recorder"],
        stdin=subprocess.PIPE,
        stderr=log,  # None (the console) outside a job with a log file
        # Its own process group: a Ctrl-C in the terminal reaches the trainer, which stops at a
        # step boundary and ends the run; the recorder must live on to write that ending.
        start_new_session=True,
    )
    if log is not None:
        log.close()  # the recorder has its own descriptor
    assert process.stdin is not None
    launch = Launch(address=address, owner_pid=os.getpid(), store_uri=store_uri, warm=tuple(warm))
    # A recorder killed before it read its launch: the first message finds it gone and says
    # so (RecorderLost, with its exit status), as for a recorder that dies later.
    with contextlib.suppress(BrokenPipeError):
        process.stdin.write(pickle.dumps(launch))
    with contextlib.suppress(BrokenPipeError):
        process.stdin.close()
    return RecorderConnection(address, process, warm)


def _open_log() -> Any:
    """The job's log file, appended to (a full or read-only disk: the console, as before)."""
    path = job_log_file()
    try:
        return open(path, "ab") if path is not None else None
    except OSError:
        return None


def warm_for(tracking: Any) -> list[str]:
    """What a recorder should import ahead for runs with these tracking settings."""
    wanted = (("plots", tracking.plots), ("model", tracking.log_model))
    return [name for name, enabled in wanted if enabled]


_private: tuple[tuple[tuple[str, str], ...], RecorderConnection] | None = None


def _recorder_environment() -> tuple[tuple[str, str], ...]:
    """What a recorder reads from its environment: MLflow's settings and credentials (every
    path it writes to comes with the messages)."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("MLFLOW_")))


def private_recorder(store_uri: str | None = None, warm: Sequence[str] = ()) -> RecorderConnection:
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
            recorder.send(Shutdown())  # it exits once this connection closes
        recorder.close()
    recorder = start_recorder(store_uri, warm)
    _private = (environment, recorder)
    return recorder


def replace_recorder(lost: RecorderConnection, store_uri: str) -> RecorderConnection:
    """A new recorder for this process's runs, in place of `lost` (this process's own, or a
    sweep's that stopped): the old process is made sure to be gone first."""
    lost.stop()
    return private_recorder(store_uri, lost.warm)


_shared: dict[Address, RecorderConnection] = {}


def _forget_connections() -> None:
    """In a forked child (a joblib worker): its parent's sockets are not its own to write to."""
    global _private
    _private = None
    _shared.clear()


os.register_at_fork(after_in_child=_forget_connections)


def shared_recorder(address: Address) -> RecorderConnection:
    """A connection (one per process) to the recorder a sweep's main process hosts: its own
    private recorder when this process is that main process (the basic launcher)."""
    if _private is not None and _private[1].address == address:
        return _private[1]
    if address not in _shared:
        _shared[address] = RecorderConnection(address)
    return _shared[address]
