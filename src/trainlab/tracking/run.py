"""One MLflow run as the trainer sees it: rows handed over to a recorder process, never waiting
on the store (tracking/connection.py says why a process of its own; messages.py what it sends).

A recorder that stops (killed by the OOM killer or a user, a crash) is replaced: `reopen` starts
a new recorder, which re-opens the run as its own trainer's (RUNNING, not stale) and skips every
step the store already holds, and says where the fit goes on: the last committed checkpoint
(recorder/commits.py: what the store holds ends there), or the fit's start when the run has none
yet (its rows were written as they came). The fit rolls back there and trains again
(engines/lightning.py), so every step is recorded once. Until then the rows of the lost recorder
are dropped: the roll-back computes them again.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.engines.base import ResumePoint
from trainlab.errors import RecorderStopped
from trainlab.paths import output_dir
from trainlab.resume.resume_run import committed_checkpoint
from trainlab.tracking.connection import RecorderConnection, RecorderLost
from trainlab.tracking.messages import (
    Artifact,
    Commit,
    EndStatus,
    FinalReport,
    HandOver,
    InfoRequest,
    Params,
    Reply,
    ResumeQuery,
    Rows,
    RunInfo,
    RunSpec,
    RunStart,
    Sync,
    Tags,
)
from trainlab.tracking.recorders import replace_recorder

MAX_PENDING_METRICS = 1000  # rows are also handed over when this many wait (one log_batch)


class TrackedRun:
    """One MLflow run, recorded by a recorder process; implements engines.base.RunHandle.

    Rows wait in memory (a tensor row stays on its device) and are handed over every
    `flush_seconds`, when MAX_PENDING_METRICS values wait, and whenever the run ends.
    """

    def __init__(
        self,
        recorder: RecorderConnection,
        spec: RunSpec,
        flush_seconds: float,
        wait: Reply = Reply.HANDLED,
    ) -> None:
        self.recorder, self.spec, self.flush_seconds = recorder, spec, flush_seconds
        self.wait = wait  # what the job's end waits for (TrackingTarget.wait)
        self.token = uuid.uuid4().hex
        self._info: RunInfo | None = None
        self._pending: dict[tuple[str, ...], list[tuple[int, int, Any]]] = {}
        self._count = 0
        self._next_flush = time.monotonic() + flush_seconds
        self._attached = False  # a copy in another process (a ddp_spawn rank)
        self._started: RunStart | None = None  # sent again to a new recorder (it skips it)
        self._checkpoint: Path | None = None  # where the last commit's checkpoint goes
        self.lost: RecorderLost | None = None  # the recorder stopped; `reopen` goes on
        recorder.send(spec, self.token)
        self._info_asked: int | None = None

    # ------------------------------------------------------------------ what training calls
    @property
    def run_id(self) -> str:
        return self.info().run_id

    @property
    def opened(self) -> bool:
        """The recorder opened the run (it has an id): refused or stopped before, it has none."""
        return self._info is not None

    @property
    def name(self) -> str:
        """The run's id once known; what to call it before (its recorder stopped too early)."""
        return self._info.run_id if self._info is not None else "(not opened yet)"

    def info(self) -> RunInfo:
        if self._info is None:
            self._info = self._handed(self.recorder.answer, self._info_asked or self.ask_info())
        return self._info

    def check_opened(self) -> None:
        """The run's id once the recorder has answered (a poll), or its refusal raised here."""
        if self._handed(self.recorder.answered, self._info_asked or self.ask_info()):
            self.info()

    def ask_info(self) -> int:
        """Ask for the run's id now, to read the answer later without waiting for the rows
        handed over in between (a job of a sweep goes on while its run is written)."""
        if self._info_asked is None:
            self._info_asked = self._handed(self.recorder.ask, InfoRequest(), self.token)
        return self._info_asked

    def _send(self, message: Any, reply: Reply | None = None) -> Any:
        return self._handed(self.recorder.send, message, self.token, reply)

    def _handed(self, call: Any, *args: Any) -> Any:
        """A call to the recorder; once it has stopped, every call says so until `reopen`."""
        if self.lost is not None:
            raise self.lost
        try:
            return call(*args)
        except RecorderLost as err:
            self.lost = err
            self._pending, self._count = {}, 0
            raise

    def add(self, keys: Sequence[str], values: Any, step: int) -> None:
        if self.lost is not None:
            return  # the fit rolls back and computes it again
        if self._info is None and self._info_asked is not None:  # a refusal stops the fit here
            self.check_opened()
        row = (step, int(time.time() * 1000), values)
        bucket = self._pending.get(tuple(keys))
        if bucket is None:
            bucket = self._pending[tuple(keys)] = []
        bucket.append(row)
        self._count += len(keys)
        if self._count >= MAX_PENDING_METRICS or time.monotonic() >= self._next_flush:
            self.flush()

    def flush(self) -> None:
        if self.lost is not None:
            return  # on the way out of the fit (Lightning's on_exception, the logger's end)
        pending, self._pending, self._count = self._pending, {}, 0
        self._next_flush = time.monotonic() + self.flush_seconds
        handed = tuple(as_rows(keys, rows) for keys, rows in pending.items())
        if len(handed) > 1:
            self._send(HandOver(handed))
        elif handed:
            self._send(handed[0])
        if self._attached:
            # A ddp_spawn rank's rows must be handled before the job's process ends the run.
            self._send(Sync(), Reply.HANDLED)

    def commit(self, step: int, staged: Path, last: Path, best: tuple, tags: dict) -> None:
        """Hand the rows over, then the checkpoint that makes them durable (recorder/commits.py);
        `best` is (its rank among the best k or None, k)."""
        self.flush()
        best_rank, best_count = best
        commit = Commit(
            step=step,
            staged=str(staged),
            last=str(last),
            best_rank=best_rank,
            best_count=best_count,
            tags=tags,
        )
        self._send(commit)
        self._checkpoint = last

    def sync(self) -> None:  # returns once everything sent so far is handled (a commit too)
        self._send(Sync(), Reply.HANDLED)

    def fit_ended(self, meanwhile: Callable[[], Any]) -> Any:
        """`meanwhile()` (the job's work on the trained module), then, where the job waits for
        the store (a single run), the wait until the fit's last checkpoint is durable: a
        recorder that stops until then is replaced while the fit can still roll back. A
        sweep's job (QUEUED) goes on while its recorder writes (the sweep's end waits)."""
        waits = self.wait is Reply.HANDLED
        asked = self._handed(self.recorder.ask, Sync(fit_ended=True), self.token) if waits else None
        done = meanwhile()
        if asked is not None:
            self._handed(self.recorder.answer, asked)
        return done

    def checkpoint(self) -> Path | None:
        """The run's checkpoint this process committed, if one is on disk (the recorder renames
        it into place once its rows are in the store): what a resume would go on from."""
        return self._checkpoint if self._checkpoint and self._checkpoint.is_file() else None

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._send(Tags({k: str(v) for k, v in tags.items()}))

    def log_params(self, params: dict[str, Any]) -> None:
        self._send(Params({k: str(v) for k, v in params.items()}))

    def log_artifact(self, local_path: Path, artifact_path: str) -> None:
        """Hand a file over without waiting: a hard link (no copy) keeps this version for the
        recorder, so the file may be replaced at once (the next checkpoint)."""
        self.flush()
        snapshot = local_path.with_name(f".{local_path.name}.{uuid.uuid4().hex}")
        os.link(local_path, snapshot)
        artifact = Artifact(
            snapshot=str(snapshot), artifact_path=artifact_path, name=local_path.name
        )
        self._send(artifact)

    # ------------------------------------------------------------------ what the pipeline calls
    def start(self, start: RunStart) -> None:
        self._started = start
        self._send(start)
        self.ask_info()

    def finish(self, report: FinalReport, wait: Reply = Reply.HANDLED) -> RunInfo | None:
        """End the run; `wait=Reply.QUEUED` returns once the recorder has it (a sweep job goes
        on while its plots and model are written), HANDLED once all of it is in the store.

        A recorder that stops on the way is replaced once: a run that trained to its end is
        ended by the new one when its last checkpoint is durable (the fit ends with a sync:
        engines/lightning.py), any other ending (KILLED, FAILED) with what is durable."""
        for last_try in (False, True):
            try:
                if self.lost is not None:
                    lost, point = self.lost, self.reopen()
                    if report.status is EndStatus.FINISHED:
                        if point is None or point.step <= report.step:  # the caller ends it
                            raise RecorderStopped(f"{lost}; the fit's last steps were not recorded")
                        warning = f"{lost}; a new one ends run {self.run_id}"
                        print(f"trainlab-train: warning: {warning}", flush=True)
                self.flush()
                info = self._send(report, wait)
                break
            except RecorderLost:
                if last_try:
                    raise
        if wait is Reply.HANDLED:
            self._info = info
        return info

    # ------------------------------------------------------------------ a recorder that stopped
    def reopen(self) -> ResumePoint | None:
        """A new recorder continues the run (see above); where the fit goes on from: the last
        committed checkpoint, or None (from the start). Raises when the new one cannot."""
        if self._info is None:  # it stopped before it said which run it opened
            raise self.lost or RecorderLost("the recorder process stopped")
        recorder = replace_recorder(self.recorder, self.spec.uri)
        token = uuid.uuid4().hex
        spec = dataclasses.replace(
            self.spec, resume_run_id=self.run_id, sweep_token=None, takeover=True
        )
        recorder.send(spec, token)
        if self._started is not None:  # lost on the way, if the first recorder never wrote it
            recorder.send(self._started, token)
        query = ResumeQuery(uri=self.spec.uri, experiment_name="", run_id=self.run_id)
        state = recorder.send(query, reply=Reply.HANDLED)
        recorder.send(InfoRequest(), token, Reply.HANDLED)  # re-opened, or why not
        self.recorder, self.token, self.lost, self._info_asked = recorder, token, None, None
        self._next_flush = time.monotonic() + self.flush_seconds
        if state.committed_step is None:
            return None
        folder = Path(state.checkpoint_dir).parent if state.checkpoint_dir else output_dir()
        return committed_checkpoint(state, recorder, self.spec.uri, self.run_id, folder)

    # A ddp_spawn job pickles its callbacks into every rank: the run travels as the recorder's
    # address and the run's token, and rank 0 hands its rows over on a connection of its own.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "address": self.recorder.address,
            "token": self.token,
            "spec": self.spec,
            "flush_seconds": self.flush_seconds,
            "wait": self.wait,
            "info": self._info,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.recorder = RecorderConnection(state["address"])
        self.spec, self.flush_seconds = state["spec"], state["flush_seconds"]
        self.wait = state["wait"]
        self.token, self._info, self._info_asked = state["token"], state["info"], None
        self._pending, self._count = {}, 0
        self._next_flush = time.monotonic() + self.flush_seconds
        self._attached = True
        self._started, self._checkpoint, self.lost = None, None, None


def as_rows(keys: tuple[str, ...], rows: list[tuple[int, int, Any]]) -> Rows:
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
    return Rows(keys=keys, steps=steps, times=times, values=array.reshape(len(rows), len(keys)))
