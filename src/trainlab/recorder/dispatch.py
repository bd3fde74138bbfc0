"""What the recorder process does with each message (MLflow is imported here, in that process).

Runs are kept by their token. The first MLflow error of a run is kept too: later messages for it
are skipped, and the trainer hears the error at its next wait (info, artifact, finish), so a run
that cannot be recorded fails loudly instead of training on unrecorded.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from trainlab.errors import ConfigError, one_line
from trainlab.tracking import protocol as msg
from trainlab.tracking import system
from trainlab.tracking.commits import find_resumable
from trainlab.tracking.environment import installed_packages
from trainlab.tracking.mlflow_store import open_client
from trainlab.tracking.summary import SweepParent
from trainlab.tracking.warmup import WarmUp
from trainlab.tracking.writer import RunWriter


class RunRefused(ConfigError):
    """What the user asked of the store cannot be done (a broken store, a run still RUNNING)."""


def refusal(err: Exception, spec: msg.RunSpec) -> str | None:
    """A team server's "no" to this user, said plainly (the credentials come from the
    environment, which this process inherited from the trainer)."""
    if getattr(err, "error_code", None) != "PERMISSION_DENIED":
        return None
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "(no MLFLOW_TRACKING_USERNAME)")
    return (
        f"user {user!r} may not create runs in experiment {spec.experiment_name!r} "
        "(PERMISSION_DENIED); expected EDIT on it: ask the server's admin (make team-user)"
    )


class Handlers:
    def __init__(self, store_uri: str | None, warm: tuple[str, ...] = ()) -> None:
        self.clients: dict[str, MlflowClient] = {}
        self.runs: dict[str, RunWriter] = {}
        self.failed: dict[str, str] = {}
        self.refused: set[str] = set()  # runs whose failure is the user's to fix: no traceback
        self.sweeps: dict[str, SweepParent] = {}
        self.shutdown = False
        if store_uri is not None:
            with contextlib.suppress(Exception):  # reported to the first run that uses it
                self.client(store_uri)
        # What every run's start needs, read while the trainer still imports torch (0.1 s).
        installed_packages()
        with contextlib.suppress(ImportError):  # psutil missing: each run says so
            system.prime()
        self.warm = WarmUp(warm)

    def close(self) -> None:
        """Before the recorder exits."""
        self.warm.close()

    def client(self, uri: str) -> MlflowClient:
        if uri not in self.clients:
            self.clients[uri] = open_client(uri)
        return self.clients[uri]

    # ------------------------------------------------------------------ dispatch
    def handle(self, kind: str, token: str, payload: Any) -> Any:
        if kind == msg.SHUTDOWN:
            self.shutdown = True
            return None
        if kind == msg.FETCH:
            return self.fetch(payload)
        if kind == msg.FIND:
            return find_resumable(self.client(payload.uri), payload)
        if kind == msg.SWEEP_START:
            self.sweeps[token] = SweepParent(self.client(payload.uri), payload)
            return self.sweeps[token].parent_run_id
        if kind == msg.SWEEP_END:
            self.warm.settled()  # the summary plot is drawn in this thread
            return self.sweeps.pop(token).end(payload)
        if kind == msg.OPEN:
            return self.open(token, payload)
        if kind == msg.SYNC and token not in self.failed:
            return None  # everything sent before it is handled (one queue, in order)
        if token in self.failed:
            if kind == msg.FINISH:
                self.end_failed(token)
            if kind in (msg.INFO, msg.FINISH, msg.ARTIFACT, msg.SYNC):
                raise (RunRefused if token in self.refused else RuntimeError)(self.failed[token])
            return None
        writer = self.runs[token]
        try:
            return self.run_message(writer, kind, payload)
        except Exception as err:
            self.failed[token] = f"recording run {writer.run_id} failed: {one_line(err)}"
            if kind == msg.FINISH:
                self.end_failed(token)
            raise RuntimeError(self.failed[token]) from err

    def open(self, token: str, spec: msg.RunSpec) -> None:
        try:
            parent = {}
            if spec.sweep_token is not None:
                parent = {"mlflow.parentRunId": self.sweeps[spec.sweep_token].parent_run_id}
            self.runs[token] = RunWriter(self.client(spec.uri), spec, parent)
            self.warm.run_opened()
        except ConfigError as err:
            self.failed[token] = one_line(err)
            self.refused.add(token)
        except Exception as err:
            self.failed[token] = f"store {spec.uri}: {refusal(err, spec) or one_line(err)}"

    def run_message(self, writer: RunWriter, kind: str, payload: Any) -> Any:
        if kind == msg.ROWS:
            writer.rows(payload)
        elif kind == msg.START:
            writer.start(payload)
        elif kind == msg.TAGS:
            writer.tags(payload)
        elif kind == msg.ARTIFACT:
            writer.artifact(*payload)
        elif kind == msg.COMMIT:
            writer.commit(payload)
        elif kind == msg.INFO:
            return writer.info
        elif kind == msg.FINISH:
            self.warm.ready()
            info = writer.finish(payload, int(time.time() * 1000))
            self.runs = {t: w for t, w in self.runs.items() if w is not writer}
            sweep = self.sweeps.get(writer.spec.sweep_token or "")
            if sweep is not None:  # the summary plot draws its train/loss without a read back
                sweep.keep_curve(writer.run_id, writer.history)
            return info
        return None

    def end_failed(self, token: str) -> None:
        """A run whose recording failed ends FAILED with the reason, as far as the store lets."""
        writer = self.runs.pop(token, None)
        if writer is not None and not writer.finished:
            try:
                writer.tags({"trainlab.error": self.failed[token]})
                writer.end("FAILED")
            except Exception:
                pass

    def disconnected(self, tokens: set[str]) -> None:
        """The process that opened these runs (or sweep) is gone without ending them."""
        for token in tokens:
            writer = self.runs.pop(token, None)
            if writer is not None and not writer.finished:
                try:
                    writer.gate.end(resumable=True)  # rows after the last commit: recomputed
                    writer.tags({"trainlab.failure": "process_ended", "trainlab.error":
                                 "the training process ended without ending its run"})  # fmt: skip
                    writer.end("KILLED")
                except Exception:
                    pass
            sweep = self.sweeps.pop(token, None)
            if sweep is not None:
                sweep.end(msg.SweepEnd(stopped=None, interrupted=True))

    def beat(self) -> None:
        """The heartbeat of every open run and sweep; a store that fails it is heard about at
        the run's next message, not here."""
        now = time.time()
        for beating in (*self.runs.values(), *self.sweeps.values()):
            with contextlib.suppress(Exception):
                beating.beat(now)

    def fetch(self, request: msg.FetchRequest) -> dict[str, str]:
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
