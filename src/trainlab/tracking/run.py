"""One MLflow run as the trainer sees it: rows handed over to a recorder process, never waiting
on the store (tracking/client.py explains why a separate process; tracking/messages.py lists
what it sends)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.tracking.client import RecorderConnection
from trainlab.tracking.messages import (
    Artifact,
    Commit,
    FinalReport,
    InfoRequest,
    Params,
    Reply,
    Rows,
    RunInfo,
    RunSpec,
    RunStart,
    Sync,
    Tags,
)

MAX_PENDING_METRICS = 1000  # rows are also handed over when this many wait (one log_batch)


class TrackedRun:
    """One MLflow run, recorded by a recorder process; implements engines.base.RunHandle.

    Rows wait in memory (a tensor row stays on its device) and are handed over every
    `flush_seconds`, when MAX_PENDING_METRICS values wait, and whenever the run ends.
    """

    def __init__(self, recorder: RecorderConnection, spec: RunSpec, flush_seconds: float) -> None:
        self.recorder, self.spec, self.flush_seconds = recorder, spec, flush_seconds
        self.token = uuid.uuid4().hex
        self._info: RunInfo | None = None
        self._pending: dict[tuple[str, ...], list[tuple[int, int, Any]]] = {}
        self._count = 0
        self._next_flush = time.monotonic() + flush_seconds
        self._attached = False  # a copy in another process (a ddp_spawn rank)
        recorder.send(spec, self.token)
        self._info_asked: int | None = None

    # ------------------------------------------------------------------ what training calls
    @property
    def run_id(self) -> str:
        return self.info().run_id

    def info(self) -> RunInfo:
        if self._info is None:
            self._info = self.recorder.answer(self._info_asked or self.ask_info())
        return self._info

    def ask_info(self) -> int:
        """Ask for the run's id now, to read the answer later without waiting for the rows
        handed over in between (a job of a sweep goes on while its run is written)."""
        if self._info_asked is None:
            self._info_asked = self.recorder.ask(InfoRequest(), self.token)
        return self._info_asked

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
            self.recorder.send(as_rows(keys, rows), self.token)
        if self._attached:
            # A ddp_spawn rank's rows must be handled before the job's process ends the run.
            self.recorder.send(Sync(), self.token, Reply.HANDLED)

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
        self.recorder.send(commit, self.token)

    def sync(self) -> None:  # returns once everything sent so far is handled (a commit too)
        self.recorder.send(Sync(), self.token, Reply.HANDLED)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.recorder.send(Tags({k: str(v) for k, v in tags.items()}), self.token)

    def log_params(self, params: dict[str, Any]) -> None:
        self.recorder.send(Params({k: str(v) for k, v in params.items()}), self.token)

    def log_artifact(self, local_path: Path, artifact_path: str) -> None:
        """Hand a file over without waiting: a hard link (no copy) keeps this version for the
        recorder, so the file may be replaced at once (the next checkpoint)."""
        self.flush()
        snapshot = local_path.with_name(f".{local_path.name}.{uuid.uuid4().hex}")
        os.link(local_path, snapshot)
        artifact = Artifact(
            snapshot=str(snapshot), artifact_path=artifact_path, name=local_path.name
        )
        self.recorder.send(artifact, self.token)

    # ------------------------------------------------------------------ what the pipeline calls
    def start(self, start: RunStart) -> None:
        self.recorder.send(start, self.token)
        self.ask_info()

    def finish(self, report: FinalReport, wait: Reply = Reply.HANDLED) -> RunInfo | None:
        """End the run; `wait=Reply.QUEUED` returns once the recorder has it (a sweep job goes
        on while its plots and model are written), HANDLED once all of it is in the store."""
        self.flush()
        info = self.recorder.send(report, self.token, wait)
        if wait is Reply.HANDLED:
            self._info = info
        return info

    # A ddp_spawn job pickles its callbacks into every rank: the run travels as the recorder's
    # address and the run's token, and rank 0 hands its rows over on a connection of its own.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "address": self.recorder.address,
            "token": self.token,
            "spec": self.spec,
            "flush_seconds": self.flush_seconds,
            "info": self._info,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.recorder = RecorderConnection(state["address"])
        self.spec, self.flush_seconds = state["spec"], state["flush_seconds"]
        self.token, self._info, self._info_asked = state["token"], state["info"], None
        self._pending, self._count = {}, 0
        self._next_flush = time.monotonic() + self.flush_seconds
        self._attached = True


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
