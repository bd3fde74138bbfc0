"""The boundary between a trainer and its recorder process (trainlab/recorder/): every message,
one frozen dataclass per kind. No MLflow, no torch here.

A sender writes an `Envelope` (the run's token, the message, the reply it waits for, the
request's number) to a `multiprocessing.connection` (a Unix socket, pickled). The recorder
handles messages one at a time in arrival order per connection, by the message's type
(recorder/dispatch.py). With `Reply.HANDLED` its `Answer` (the result, or one line saying why
not) comes once the message is handled, which is how a sender waits for durability; with
`Reply.QUEUED` as soon as the message arrived; without a reply, never (but a run whose recording
fails says so at once, in a NOTICE).

    message       the recorder ...                                        answers
    RunSpec       creates the run, or re-opens it to resume               -
    RunStart      logs params, config files, first metrics, data inputs   -
    Rows          writes metric rows (held until a Commit once gated)     -
    HandOver      the same for several Rows (one a key set) at once       -
    Tags          sets tags                                               -
    Params        logs params                                             -
    Artifact      logs the trainer's snapshot of a file                   -
    InfoRequest   -                                                       RunInfo
    FinalReport   logs final metrics, plots, model; ends the run          RunInfo
    Sync          nothing: everything sent before it is handled           None
    Commit        makes a checkpoint durable with the rows before it      -
    ResumeQuery   finds the run a job continues                           ResumeState | None
    FetchRequest  downloads a run's artifacts                             {artifact: local path}
    SweepSpec     creates a sweep's parent run, or re-opens it to continue SweepStarted
    SweepEnd      writes the sweep's summary, ends its parent             SweepOutcome
    Shutdown      exits once every connection is closed                   -
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only in annotations: the checks before torch need no numpy either
    import numpy as np

from trainlab.data.lineage import DataRecord
from trainlab.tracking.payloads import Evaluation, ModelPayload, PlotData


class Reply(Enum):
    """When the recorder answers a message."""

    HANDLED = "handled"  # once it is handled (in the store): the sender waits for durability
    QUEUED = "queued"  # as soon as it arrived: the sender only waits for the hand-over


class AnswerStatus(Enum):
    OK = "ok"  # the result is the handler's
    ERROR = "error"  # recording failed; the result is one line
    REFUSED = "refused"  # the user's to fix (a store to repair, a run still RUNNING): one line


class EndStatus(Enum):
    """How a run ends; the values are MLflow's run status names."""

    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class Message:
    """What a trainer asks of its recorder: one subclass per kind (the table above)."""


@dataclass(frozen=True)
class Address:
    """Where a recorder listens: a Unix socket on one host, and the key that opens it."""

    host: str
    path: str
    authkey: bytes

    def reachable_here(self) -> bool:
        return self.host == socket.gethostname()


@dataclass(frozen=True)
class Launch:
    """What a new recorder process is told on its standard input."""

    address: Address
    owner_pid: int  # it exits when this process is gone and no connection is left
    store_uri: str | None  # opened (tables created) right away, while the trainer imports torch
    warm: tuple[str, ...]  # modules to import before the first message: what finish will need


@dataclass(frozen=True)
class RunSpec(Message):
    """Open a run: create it, or re-open `resume_run_id` (RUNNING again)."""

    uri: str
    experiment_name: str
    run_name: str | None
    tags: dict[str, str]
    # Where a new experiment of the embedded store keeps its artifacts (beside mlflow.db, never
    # under the current folder); None for other stores, which decide themselves.
    artifact_root: str | None = None
    resume_run_id: str | None = None
    sweep_token: str | None = None  # a child of this sweep's parent run (the recorder's sweep)
    system_metrics_seconds: float | None = None  # sample system/... this often; None: never
    verify_against: str | None = None  # at the end, compare the trajectory with this run's
    heartbeat_seconds: float = 30.0  # how often the recorder rewrites trainlab.heartbeat
    # Rows are held until a checkpoint commits them (recorder/commits.py); False: written as
    # they come (engines without checkpoints, or no periodic checkpoints).
    gated: bool = False
    takeover: bool = False  # its own trainer re-opens it: its recorder stopped (tracking/run.py)


@dataclass(frozen=True)
class RunStart(Message):
    params: dict[str, str]
    files: dict[str, Any]  # artifact file -> dict, logged as YAML (config/resolved.yaml, ...)
    metrics: dict[str, float]  # logged at step 0 (pred/before, ols/loss)
    texts: dict[str, str] = field(default_factory=dict)  # artifact file -> text (git.diff)
    datasets: tuple[DataRecord, ...] = ()  # logged as MLflow dataset inputs


@dataclass(frozen=True)
class Rows(Message):
    keys: tuple[str, ...]
    steps: np.ndarray  # int64, one per row
    times: np.ndarray  # int64 milliseconds, one per row
    values: np.ndarray  # float64, rows x keys


@dataclass(frozen=True)
class HandOver(Message):
    """The rows of one hand-over with more than one key set (the steps' and an epoch's), which
    the recorder writes in one transaction (each one the store commits has a fixed cost)."""

    rows: tuple[Rows, ...]


@dataclass(frozen=True)
class Tags(Message):
    tags: dict[str, str]  # set on the run (a later value replaces an earlier one)


@dataclass(frozen=True)
class Params(Message):
    params: dict[str, str]  # logged as the run's params (a module's saved hyperparameters)


@dataclass(frozen=True)
class Artifact(Message):
    """A file for the run's artifacts: the trainer's snapshot of it (a hard link, removed once
    logged), logged under `artifact_path` with its own `name`."""

    snapshot: str
    artifact_path: str
    name: str


@dataclass(frozen=True)
class InfoRequest(Message):
    """Answered with the run's RunInfo once the run exists."""


@dataclass(frozen=True)
class Sync(Message):
    """Answered once everything sent before it is handled (a Commit included)."""

    fit_ended: bool = False  # the run's fit is over: only its ending is still to come


@dataclass(frozen=True)
class Shutdown(Message):
    """The recorder's owner is done: it exits once every connection is closed."""


@dataclass(frozen=True)
class FinalReport(Message):
    """End the run: final metrics, plots, model, then its status."""

    status: EndStatus
    step: int  # where the final metrics are logged
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # one line, for the trainlab.error tag
    texts: dict[str, str] = field(default_factory=dict)  # artifact file -> text (error.txt)
    plots: PlotData | None = None
    model: ModelPayload | None = None
    evaluation: Evaluation | None = None  # scored into test/* metrics and plots/test/*


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    run_name: str
    experiment_id: str
    uri: str
    model_uri: str | None = None
    warnings: tuple[str, ...] = ()  # what went wrong while recording, without losing the run
    verification: tuple[str, ...] = ()  # a rerun's comparison with its original, as printed
    metrics: dict[str, float] = field(default_factory=dict)  # the final ones, test/* included
    metric_rows: str = ""  # how the recorder writes the run's metric rows (the job's log says it)


@dataclass(frozen=True)
class Commit(Message):
    """A checkpoint the trainer has written (`staged`); once every row sent before this message
    is in the store it becomes `last` (renamed, atomic) and the run's artifacts."""

    step: int  # its global step: the rows of steps < step belong to it
    staged: str  # <folder>/last.ckpt.partial, written by the trainer (fsynced by the recorder)
    last: str  # <folder>/last.ckpt
    best_rank: int | None = None  # the rank (1 = best) it takes among the best k, if any
    best_count: int = 0  # k
    tags: dict[str, str] = field(default_factory=dict)  # what each best-<i> slot now holds


@dataclass(frozen=True)
class ResumeQuery(Message):
    """Which run to continue: `run_id`, or this job's latest unfinished run (by job key, and
    cluster job when given) that has a committed checkpoint."""

    uri: str
    experiment_name: str
    run_id: str | None = None
    job_key: str | None = None
    cluster_job: str | None = None
    ended_too: bool = False  # a continued sweep's job: a run that ended counts (not trained again)


@dataclass(frozen=True)
class ResumeState:
    run_id: str
    status: str  # as the store has it: RUNNING after a hard kill, or an EndStatus value
    committed_step: int | None  # None: a run recorded before commits (its last.ckpt is the end)
    checkpoint_dir: str | None  # where its trainer kept last.ckpt (may be gone or elsewhere)
    objective: float | None = None  # a FINISHED run's final val (else train) loss
    experiment_id: str = ""
    best: tuple[tuple[int, str], ...] = ()  # (step, artifact) of the best-k slots it committed


@dataclass(frozen=True)
class FetchRequest(Message):
    uri: str
    run_id: str
    artifacts: tuple[str, ...]
    folder: str


@dataclass(frozen=True)
class SweepSpec(Message):
    uri: str
    experiment_name: str
    run_name: str
    tags: dict[str, str]
    params: dict[str, str]
    sweep_dir: str
    swept_keys: tuple[str, ...]
    artifact_root: str | None = None
    resume_run_id: str | None = None  # `sweep.resume=<id>`, else the parent of sweep_dir, or new


@dataclass(frozen=True)
class SweepStarted:
    parent_run_id: str
    sweep_dir: str  # a continued sweep's own folder


@dataclass(frozen=True)
class SweepEnd(Message):
    stopped: str | None  # why the sweep stopped early (sweep.stop_on_failure), if it did
    error: str | None = None  # the sweep itself failed (launcher error ...): parent FAILED
    interrupted: bool = False  # Ctrl-C or SIGTERM: parent KILLED


@dataclass(frozen=True)
class SweepOutcome:
    parent_run_id: str
    summary: str  # the table and the best child, as printed
    problem: str | None  # why the command should exit non-zero
    warning: str | None  # jobs that failed in a sweep that goes on
    killed: tuple[int, ...] = ()  # jobs whose runs ended KILLED: the same command continues them


@dataclass(frozen=True)
class Envelope:
    token: str  # the run (or sweep) it is about; "" for a message to the recorder itself
    message: Message
    reply: Reply | None = None  # None: no answer
    number: int = 0  # the request's number on its connection, repeated in its Answer


@dataclass(frozen=True)
class Answer:
    number: int  # NOTICE: it answers no request; run `token`'s recording failed
    status: AnswerStatus
    result: Any = None  # the handler's result, or one line saying why it failed
    token: str = ""


NOTICE = 0  # requests count from 1
