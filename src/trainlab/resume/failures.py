"""How a run ends when its recording broke (the trainer's side; run_life.py calls it for any
error that is not a signal): a recorder that stopped and could not be replaced
(engines/lightning.py, tracking/run.py), a store that stopped taking writes (recorder/dispatch.py
said so at once), or anything else. Each says what happened to the run and, when a checkpoint
is kept, how to resume it; what was durable stays in the store.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from trainlab import paths
from trainlab.errors import RecorderStopped, one_line
from trainlab.tracking.connection import RecorderError
from trainlab.tracking.liveness import FAILURE_TAG
from trainlab.tracking.messages import EndStatus, FinalReport, Reply
from trainlab.tracking.run import TrackedRun
from trainlab.tracking.store_checks import sqlite_path
from trainlab.tracking.tags import RECORDER_STOPPED

DEFAULT_SERVER = "http://127.0.0.1:5001"  # conf/tracking/server.yaml's, without the variable


def end_after(
    err: BaseException, run: TrackedRun, report: FinalReport, resumed: Path | None
) -> None:
    """End a run whose job raised `err` (not a signal) with `report` (FAILED, the error). A
    recorder that stopped for good: KILLED by a fresh one, `trainlab.failure=recorder_stopped`.
    A run whose recording failed (a full disk): already FAILED by its recorder, said once (by the
    caller's error line). Then how to resume, when a checkpoint is kept (`resumed`: the one this
    attempt started from)."""
    lost = isinstance(err, RecorderStopped)
    # Refused before it opened (a live run, a store MLflow refuses): nothing to resume.
    opened = run.opened
    if lost:
        tags = {**report.tags, FAILURE_TAG: RECORDER_STOPPED}
        report = dataclasses.replace(report, status=EndStatus.KILLED, tags=tags)
    try:
        run.finish(report, Reply.HANDLED)
    except Exception as ending:  # never in place of the error that ended the job
        if lost or not isinstance(err, RecorderError):
            print(
                f"trainlab-train: warning: run {run.name} could not be ended "
                f"({one_line(ending)}); `trainlab-store stale --mark` ends it once its "
                "processes are gone",
                flush=True,
            )
        elif str(ending) != str(err):  # the store took no more writes: not even the ending
            print(f"trainlab-train: warning: {one_line(ending)}", flush=True)
    if not opened:
        return
    checkpoint = run.checkpoint() or resumed
    database = sqlite_path(run.spec.uri)
    if database is not None and not database.is_file():
        return  # the store was removed, and the run with it: nothing to resume
    if (lost or isinstance(err, RecorderError)) and checkpoint and checkpoint.is_file():
        print(f"Run {run.name} keeps its checkpoint {checkpoint}", flush=True)
        print(f"Resume with: {resume_command(run)}", flush=True)


def resume_command(run: TrackedRun) -> str:
    """The command that resumes `run`: with the store it is in when that is not the default one
    (a team server's run resumed without `tracking=server` is looked for in the local store)."""
    command = f"trainlab-train resume={run.name}"
    uri = run.spec.uri
    if uri == paths.tracking_uri():
        return command
    server = os.environ.get("TRAINLAB_SERVER_URI") or DEFAULT_SERVER
    if uri.rstrip("/") == server.rstrip("/"):
        return f"{command} tracking=server"
    return f"{command} tracking.uri={uri}"
