"""What the recorder process does with each message, chosen by its type (MLflow is imported here).

Runs are kept by their token. A run's first MLflow error is kept too: later messages for it are
skipped, and the trainer hears the error at once (the server's NOTICE, raised at its next
hand-over) or at its next wait (info, finish, sync): a run that cannot be recorded fails loudly.
A store or artifact folder that cannot be written (mlflow_store.store_problem) is said plainly;
the run ends FAILED (`trainlab.failure=recording_failed`, `trainlab.error`) as far as the store
still takes writes, keeping what was durable: the rows held after its last checkpoint are
dropped, so that a resume goes on from that checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from mlflow.tracking import MlflowClient

from trainlab.errors import ConfigError, one_line
from trainlab.recorder import system_metrics
from trainlab.recorder.bulk_metrics import for_client
from trainlab.recorder.commits import DIR_TAG as CHECKPOINT_DIR_TAG
from trainlab.recorder.commits import find_resumable
from trainlab.recorder.lost_files import files_kept
from trainlab.recorder.mlflow_store import (
    SERVER_DOWN,
    RunRefused,
    open_client,
    refusal,
    store_problem,
)
from trainlab.recorder.sweep_parent_run import SweepParent
from trainlab.recorder.warmup import WarmUp
from trainlab.recorder.writer import RunWriter
from trainlab.tracking.environment import installed_packages
from trainlab.tracking.liveness import FAILURE_TAG
from trainlab.tracking.messages import (
    Artifact,
    Commit,
    EndStatus,
    FetchRequest,
    FinalReport,
    HandOver,
    InfoRequest,
    Message,
    Params,
    ResumeQuery,
    Rows,
    RunInfo,
    RunSpec,
    RunStart,
    Shutdown,
    SweepEnd,
    SweepOutcome,
    SweepSpec,
    SweepStarted,
    Sync,
    Tags,
)
from trainlab.tracking.store_checks import sqlite_path
from trainlab.tracking.tags import ERROR_TAG, PARENT_TAG

# The messages whose sender may be waiting: a run whose recording failed says so to them.
WAITED_ON = (InfoRequest, FinalReport, Artifact)
RECORDING_FAILED = "recording_failed"  # the trainlab.failure of a run the store stopped taking
PROCESS_ENDED = {
    FAILURE_TAG: "process_ended",
    ERROR_TAG: "the training process ended without ending its run",
}


class Dispatcher:
    """The recorder's runs and sweeps, and a handler for each kind of message."""

    def __init__(self, store_uri: str | None, warm: tuple[str, ...] = ()) -> None:
        self.clients: dict[str, MlflowClient] = {}
        self.runs: dict[str, RunWriter] = {}
        self.failed: dict[str, str] = {}
        self.refused: set[str] = set()  # runs whose failure is the user's to fix: no traceback
        self.sweeps: dict[str, SweepParent] = {}
        # What each run's start wrote, and the files handed over since (recorder/lost_files.py).
        self.started: dict[str, RunStart] = {}
        self.handed: dict[str, set[str]] = {}
        self.shutdown = False
        if store_uri is not None:
            with contextlib.suppress(Exception):  # reported to the first run that uses it
                self.client(store_uri)
        # What every run's start needs, read while the trainer still imports torch.
        installed_packages()
        with contextlib.suppress(ImportError):  # psutil missing: each run says so
            system_metrics.prime()
        self.warm = WarmUp(warm)

    def close(self) -> None:  # before the recorder exits
        self.warm.close()

    def client(self, uri: str) -> MlflowClient:
        if uri not in self.clients:
            client = open_client(uri)
            for_client(client)  # which path metric rows take, checked once (while torch loads)
            self.clients[uri] = client
        return self.clients[uri]

    def handle(self, token: str, message: Message) -> Any:
        """Hand `message` about run (or sweep) `token` to its handler; returns the answer."""
        handler = self.HANDLERS.get(type(message))
        if handler is not None:
            return handler(self, token, message)
        return self.to_run(token, message)

    # ------------------------------------------------------------------ the recorder's own
    def on_shutdown(self, token: str, message: Shutdown) -> None:
        self.shutdown = True

    def on_fetch(self, token: str, request: FetchRequest) -> dict[str, str]:
        """Download a run's artifacts into a folder: {artifact path: local path}."""
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        client = self.client(request.uri)
        client.get_run(request.run_id)  # an unknown run is its own error
        folder = Path(request.folder)
        folder.mkdir(parents=True, exist_ok=True)
        return {
            path: client.download_artifacts(request.run_id, path, str(folder))
            for path in request.artifacts
        }

    def on_find(self, token: str, query: ResumeQuery) -> Any:
        return find_resumable(self.client(query.uri), query)

    def on_sweep_start(self, token: str, spec: SweepSpec) -> SweepStarted:
        self.sweeps[token] = SweepParent(self.client(spec.uri), spec)
        return self.sweeps[token].started

    def on_sweep_end(self, token: str, end: SweepEnd) -> SweepOutcome:
        self.warm.settled()  # the summary plot is drawn in this thread
        return self.sweeps.pop(token).end(end)

    def on_sync(self, token: str, message: Sync) -> None:
        """Everything sent before it is handled (one queue, in order), or the run's failure."""
        if token in self.failed:
            raise self.failure(token)
        if message.fit_ended and token in self.runs:  # not waited for by the run's end
            system_metrics.stop_early(self.runs[token].system_metrics)

    def on_open(self, token: str, spec: RunSpec) -> None:
        try:
            parent = {}
            if spec.sweep_token is not None:
                parent = {PARENT_TAG: self.sweeps[spec.sweep_token].parent_run_id}
            self.runs[token] = RunWriter(self.client(spec.uri), spec, parent)
            self.warm.run_opened()
        except ConfigError as err:
            self.failed[token] = one_line(err)
            self.refused.add(token)
        except Exception as err:
            self.failed[token] = (
                f"store {spec.uri}: {refusal(err, spec.experiment_name) or one_line(err)}"
            )

    HANDLERS: ClassVar[dict[type[Message], Callable[..., Any]]] = {
        Shutdown: on_shutdown,
        FetchRequest: on_fetch,
        ResumeQuery: on_find,
        SweepSpec: on_sweep_start,
        SweepEnd: on_sweep_end,
        RunSpec: on_open,
        Sync: on_sync,
    }

    # ------------------------------------------------------------------ one run's
    def to_run(self, token: str, message: Message) -> Any:
        """A message for the writer of run `token` (skipped once its recording failed)."""
        if token in self.failed:
            if isinstance(message, FinalReport):
                self.end_failed(token)
            if isinstance(message, WAITED_ON):
                raise self.failure(token)
            return None
        writer = self.runs[token]
        try:
            return self.RUN_HANDLERS[type(message)](self, writer, message)
        except Exception as err:
            problem = store_problem(err, writer.spec.uri)
            self.failed[token] = f"recording run {writer.run_id} failed: {problem or one_line(err)}"
            if problem is not None:
                self.refused.add(token)
            if isinstance(message, FinalReport):
                self.end_failed(token)
            raise self.failure(token) from None  # the line says it all (MLflow's: the log)

    def on_start(self, writer: RunWriter, start: RunStart) -> None:
        writer.start(start)
        self.started[writer.run_id] = start

    def on_rows(self, writer: RunWriter, handed: Rows | HandOver) -> None:
        writer.rows(*(handed.rows if isinstance(handed, HandOver) else (handed,)))

    def on_tags(self, writer: RunWriter, tags: Tags) -> None:
        writer.tags(tags.tags)

    def on_params(self, writer: RunWriter, params: Params) -> None:
        writer.params(params.params)

    def on_artifact(self, writer: RunWriter, artifact: Artifact) -> None:
        writer.artifact(artifact.snapshot, artifact.artifact_path, artifact.name)
        path = "/".join(filter(None, (artifact.artifact_path, artifact.name)))
        self.handed.setdefault(writer.run_id, set()).add(path)

    def on_commit(self, writer: RunWriter, commit: Commit) -> None:
        try:
            writer.commit(commit)
        except Exception:
            # The checkpoint is on this machine (renamed before its upload failed): its folder,
            # named on the run, lets `resume=<id>` find it while the artifact is missing.
            if Path(commit.last).is_file():
                with contextlib.suppress(Exception):
                    writer.tags({CHECKPOINT_DIR_TAG: str(Path(commit.last).parent)})
            raise

    def on_info(self, writer: RunWriter, request: InfoRequest) -> RunInfo:
        return writer.info

    def on_finish(self, writer: RunWriter, report: FinalReport) -> RunInfo:
        self.warm.ready()
        start = self.started.pop(writer.run_id, None)
        handed = sorted(self.handed.pop(writer.run_id, set()))
        report = files_kept(writer, report, start, handed)
        info = writer.finish(report, int(time.time() * 1000))
        self.runs = {t: w for t, w in self.runs.items() if w is not writer}
        sweep = self.sweeps.get(writer.spec.sweep_token or "")
        if sweep is not None:  # the summary plot draws its train/loss without a read back
            sweep.keep_curve(writer.run_id, writer.history)
        return info

    RUN_HANDLERS: ClassVar[dict[type[Message], Callable[..., Any]]] = {
        RunStart: on_start,
        Rows: on_rows,
        HandOver: on_rows,
        Tags: on_tags,
        Params: on_params,
        Artifact: on_artifact,
        Commit: on_commit,
        InfoRequest: on_info,
        FinalReport: on_finish,
    }

    # ------------------------------------------------------------------ runs left behind
    def failure(self, token: str) -> Exception:
        return (RunRefused if token in self.refused else RuntimeError)(self.failed[token])

    def end_failed(self, token: str) -> None:
        """A run whose recording failed ends FAILED with the reason, as far as the store lets
        (the status first: a store that takes only a little more should not end up without it).
        The rows held after its last checkpoint are dropped: a resume computes them again."""
        writer = self.runs.pop(token, None)
        if writer is None or writer.finished:
            return
        # A server that does not answer would make each write wait out its retries again.
        ended = SERVER_DOWN not in self.failed[token]
        if ended:
            try:
                writer.end(EndStatus.FAILED)
            except Exception:
                ended = False
            with contextlib.suppress(Exception):
                writer.tags({FAILURE_TAG: RECORDING_FAILED, ERROR_TAG: self.failed[token]})
        database = sqlite_path(writer.spec.uri)
        if database is not None and not database.is_file():
            raise RunRefused(f"run {writer.run_id} went with the store that was removed")
        if not ended:
            raise RunRefused(
                f"run {writer.run_id} could not be ended either: it stays RUNNING until the store "
                "takes writes again; then `trainlab-store stale --mark` (or a resume) ends it"
            )

    def disconnected(self, tokens: set[str]) -> None:
        """The process that opened these runs (or sweep) is gone without ending them."""
        for token in tokens:
            writer = self.runs.pop(token, None)
            if writer is not None and not writer.finished:
                try:
                    writer.gate.end(resumable=True)  # rows after the last commit: recomputed
                    writer.tags(PROCESS_ENDED)
                    writer.end(EndStatus.KILLED)
                except Exception:
                    pass
            sweep = self.sweeps.pop(token, None)
            if sweep is not None:
                sweep.end(SweepEnd(stopped=None, interrupted=True))

    def beat(self) -> None:
        """The heartbeat of every open run and sweep (a store that fails it: its next message)."""
        now = time.time()
        for beating in (*self.runs.values(), *self.sweeps.values()):
            with contextlib.suppress(Exception):
                beating.beat(now)
