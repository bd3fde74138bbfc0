"""The recorder process's entry, its connections and its writer loop.

`python -m trainlab.recorder` runs `main`: it reads its `Launch` from standard input, listens on a
Unix socket at once, then imports MLflow, opens the store and imports what finishing a run needs
(matplotlib, torch), all while the trainer is still importing torch and Lightning. Messages from
every connection (the trainer, a ddp_spawn rank, a sweep's local jobs) go through one queue and
are handled one at a time by this process's main thread: SQLite has one writer, and each run's
messages are handled in the order they were sent.

It ends once its owner (the process that started it) is gone and every connection is closed, at
once (it is told of its owner's exit, on Linux): it inherits the trainer's standard output, so a
pipeline or a `subprocess.run` reading the trainer's output waits until it exits too. A
run whose trainer disconnected without finishing it (killed, crashed) ends KILLED with all it was
handed; SIGTERM and SIGINT are held off until then (SLURM signals every process of a job). While
it holds a run open it rewrites the run's heartbeat tag (tracking/liveness.py), so that a run
whose trainer and recorder both died is recognisable as stale. A message nobody waits for that
fails (rows on a full disk) is answered anyway, with a NOTICE, so that the trainer stops at its
next hand-over. Its standard error is the job's log file when the trainer has one (MLflow and
SQLAlchemy log each failed write with a long traceback there, not on the console).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import select
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

from trainlab import collector
from trainlab.errors import ConfigError, one_line
from trainlab.logs import quiet_libraries
from trainlab.tracking.messages import (
    NOTICE,
    Answer,
    AnswerStatus,
    Envelope,
    FinalReport,
    Launch,
    Reply,
    RunSpec,
    SweepEnd,
    SweepSpec,
)

BEAT_CHECK_SECONDS = 1.0  # how often the loop asks the open runs whether a heartbeat is due
OPENS = (RunSpec, SweepSpec)  # after these, a connection holds the run (or sweep) of the token
ENDS = (FinalReport, SweepEnd)  # and after these no longer


@dataclass(eq=False)
class Peer:
    """One connection; replies to it are sent from two threads, under its lock."""

    conn: Connection
    lock: threading.Lock = field(default_factory=threading.Lock)
    tokens: set[str] = field(default_factory=set)  # runs and sweeps it opened

    def reply(self, number: int, status: AnswerStatus, result: Any = None, token: str = "") -> None:
        answer = Answer(number=number, status=status, result=result, token=token)
        with self.lock, contextlib.suppress(OSError):  # a sender that is gone hears nothing
            self.conn.send_bytes(pickle.dumps(answer, pickle.HIGHEST_PROTOCOL))


class RecorderServer:
    """Accepts connections, reads their envelopes into one inbox, and hands each message to the
    dispatcher in this process's main thread."""

    def __init__(self, launch: Launch) -> None:
        self.launch = launch
        # None in place of an envelope: that connection ended; None in place of the peer too:
        # the owner exited (watch_owner).
        self.inbox: queue.Queue[tuple[Peer | None, Envelope | None]] = queue.Queue()
        self.peers: set[Peer] = set()
        self.peers_lock = threading.Lock()
        self.dispatcher: Any = None  # recorder.dispatch.Dispatcher, once MLflow is imported
        self.noticed: set[str] = set()  # runs whose trainer was told that their recording failed

    # ------------------------------------------------------------------ connections
    def serve(self, listener: Listener) -> None:
        while True:
            try:
                conn = listener.accept()
            except (OSError, EOFError):
                continue  # a client that failed the handshake
            peer = Peer(conn)
            with self.peers_lock:
                self.peers.add(peer)
            threading.Thread(target=self.read, args=(peer,), daemon=True).start()

    def read(self, peer: Peer) -> None:
        while True:
            try:
                envelope: Envelope = pickle.loads(peer.conn.recv_bytes())
            except (OSError, EOFError):
                self.inbox.put((peer, None))
                return
            except Exception:  # a message that cannot be read: a bug; the sender is told by EOF
                traceback.print_exc()
                peer.conn.close()
                self.inbox.put((peer, None))
                return
            if envelope.reply is Reply.QUEUED:
                peer.reply(envelope.number, AnswerStatus.OK)
            self.inbox.put((peer, envelope))

    def watch_owner(self) -> None:
        """Wake the writer loop the moment the owner exits, instead of at its next poll: whatever
        reads the trainer's output to its end waits for this process too (docs/performance.md).
        Linux's pidfd becomes readable once the owner has exited and its children (this process)
        have a new parent; elsewhere, or for an owner already gone, the loop's poll notices."""
        try:
            owner = os.pidfd_open(self.launch.owner_pid)
        except (AttributeError, OSError):
            return
        select.select([owner], [], [])
        os.close(owner)
        self.inbox.put((None, None))

    # ------------------------------------------------------------------ the writer loop
    def run(self) -> None:
        """Handle messages until nothing more can come; rewrite the open runs' heartbeats."""
        next_beat = time.monotonic() + BEAT_CHECK_SECONDS
        while True:
            if time.monotonic() >= next_beat:
                self.dispatcher.beat()
                next_beat = time.monotonic() + BEAT_CHECK_SECONDS
            try:
                peer, envelope = self.inbox.get(timeout=0.2)
            except queue.Empty:
                if self.finished():
                    return
                continue
            if envelope is None:
                if peer is not None:
                    with self.peers_lock:
                        self.peers.discard(peer)
                    self.dispatcher.disconnected(peer.tokens)
                if self.finished():  # the owner's exit and its connection's end, in any order
                    return
                continue
            assert peer is not None  # an envelope comes from a connection
            self.handle(peer, envelope)

    def handle(self, peer: Peer, envelope: Envelope) -> None:
        token, message, waits = envelope.token, envelope.message, envelope.reply is Reply.HANDLED
        if isinstance(message, OPENS):
            peer.tokens.add(token)
        try:
            result = self.dispatcher.handle(token, message)
        except Exception as err:
            # REFUSED: the user's to fix (the trainer shows one line, no traceback hint)
            refused = isinstance(err, ConfigError)
            status = AnswerStatus.REFUSED if refused else AnswerStatus.ERROR
            if waits:
                peer.reply(envelope.number, status, one_line(err))
            elif token not in self.noticed:
                # Nobody waits for rows: the trainer is told at once and stops at its next
                # hand-over, instead of training on unrecorded until it next waits.
                self.noticed.add(token)
                peer.reply(NOTICE, status, one_line(err), token)
            return
        if isinstance(message, ENDS):
            peer.tokens.discard(token)
        if waits:
            peer.reply(envelope.number, AnswerStatus.OK, result)

    def finished(self) -> bool:
        """The owner is gone (or said so) and nobody is connected: nothing more can come."""
        owner_gone = os.getppid() != self.launch.owner_pid or self.dispatcher.shutdown
        with self.peers_lock:
            idle = not self.peers
        return owner_gone and idle and self.inbox.empty()


# MLflow's documented settings of its HTTP client; the user's own settings win.
OUTAGE_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def main() -> None:
    # Held while MLflow and what finishing runs needs import; the warm-up resumes it once they
    # are in (trainlab/collector.py, recorder/warmup.py).
    collector.pause()
    launch: Launch = pickle.load(sys.stdin.buffer)
    # SLURM and terminals signal every process of a job; the trainer decides when the run ends,
    # and this process ends when its owner is gone (see RecorderServer.finished).
    # USR2 too: SLURM's `--signal` (submitit's preemption and time-limit notice) reaches every
    # process of the job, and its default action would end this one before it ends the run.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)
    server = RecorderServer(launch)
    listener = Listener(launch.address.path, "AF_UNIX", authkey=launch.address.authkey)
    threading.Thread(target=server.serve, args=(listener,), daemon=True).start()
    threading.Thread(target=server.watch_owner, daemon=True).start()
    # MLflow sets its loggers' level from this when it is imported ("Creating initial MLflow
    # database tables..." is INFO); this process's own environment, not the trainer's.
    os.environ["MLFLOW_LOGGING_LEVEL"] = "WARNING"
    # MLflow 3 sends usage telemetry from a thread of its own; a cluster node usually cannot
    # reach it, and a run is not the place to try. The user's own setting wins.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow draws a progress bar on stderr for every download (a resume's checkpoint, a model
    # loaded from code while it is logged); this process has no terminal of its own to draw on.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # An outage of the tracking server or of the object store behind it is said within a
    # minute, while a server restart is still bridged: fewer, shorter retries than MLflow's
    # defaults (docs/performance.md and docs/troubleshooting.md give the figures).
    for name, value in OUTAGE_RETRIES.items():
        os.environ.setdefault(name, value)
    quiet_libraries()
    # Imported only now: the socket is listening before MLflow's slow import.
    from trainlab.recorder.dispatch import Dispatcher

    code = 0
    try:
        server.dispatcher = Dispatcher(launch.store_uri, launch.warm)
        server.run()
        server.dispatcher.close()
    except BaseException:  # a bug: say where, and let the trainer report that it stopped
        traceback.print_exc()
        code = 1
    shutil.rmtree(Path(launch.address.path).parent, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written; skip unloading MLflow, SQLAlchemy and torch (over a second).
    os._exit(code)
