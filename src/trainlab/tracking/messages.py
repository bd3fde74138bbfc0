"""What the trainer and the recorder process say to each other (no MLflow, no torch here).

Every message is a tuple `(kind, token, payload, reply, number)` sent over a
`multiprocessing.connection` (a Unix socket, pickled). The recorder handles messages one at a time
in arrival order per connection; with `reply` "handled" it answers `(number, "ok", result)` or
`(number, "error", one line)` once the message is handled, which is how a sender waits for
durability; with "queued" it answers as soon as the message arrived.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only in annotations: the checks before torch need no numpy either
    import numpy as np

from trainlab.data.lineage import DataRecord

# kinds of message
OPEN = "open"  # RunSpec: create the run (or re-open it to resume)
START = "start"  # RunStart: params, config files and first metrics of a new run
ROWS = "rows"  # Rows: metric rows
TAGS = "tags"  # dict: tags
ARTIFACT = "artifact"  # (local path, artifact dir): copy a file into the run's artifacts
INFO = "info"  # -> RunInfo once the run exists
FINISH = "finish"  # FinalReport: final metrics, plots, model, status -> RunInfo
SYNC = "sync"  # -> None once everything sent before it is handled
COMMIT = "commit"  # Commit: a checkpoint, durable together with every row sent before it
FIND = "find"  # ResumeQuery -> ResumeState | None: the run a job continues, and its checkpoint
FETCH = "fetch"  # FetchRequest -> {artifact path: local path}
SWEEP_START = "sweep_start"  # SweepSpec: create the sweep's parent run
SWEEP_END = "sweep_end"  # SweepEnd -> SweepOutcome
SHUTDOWN = "shutdown"  # the owner is done: exit once every connection is closed

# Tags that link a sweep's runs, as the dashboard and the summary read them.
PARENT_TAG = "mlflow.parentRunId"
JOB_TAG = "trainlab.sweep.job"
OVERRIDES_TAG = "trainlab.sweep.overrides"
ERROR_TAG = "trainlab.error"
RERUN_TAG = "trainlab.rerun_of"  # a run made by `rerun=<run id>` names that run


@dataclass(frozen=True)
class Address:
    """Where a recorder listens: a Unix socket on one host, and the key that opens it."""

    host: str
    path: str
    authkey: bytes

    def reachable_here(self) -> bool:
        return self.host == socket.gethostname()


@dataclass(frozen=True)
class RunSpec:
    uri: str
    experiment_name: str
    run_name: str | None
    tags: dict[str, str]
    # Where a new experiment of the embedded store keeps its artifacts (beside mlflow.db, never
    # under the current folder); None for other stores, which decide themselves.
    artifact_root: str | None = None
    resume_run_id: str | None = None  # re-open this run (RUNNING again) instead of creating one
    sweep_token: str | None = None  # a child of this sweep's parent run (the recorder's sweep)
    system_metrics_seconds: float | None = None  # sample system/... this often; None: never
    verify_against: str | None = None  # at the end, compare the trajectory with this run's
    heartbeat_seconds: float = 30.0  # how often the recorder rewrites trainlab.heartbeat
    # Rows are held until a checkpoint commits them (tracking/commits.py); False: written as
    # they come (engines without checkpoints, or no periodic checkpoints).
    gated: bool = False


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'optimizer': {'lr': 0.1}} -> {'optimizer.lr': 0.1}; lists stay whole values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


@dataclass(frozen=True)
class RunStart:
    params: dict[str, str]
    files: dict[str, Any]  # artifact file -> dict, logged as YAML (config/resolved.yaml, ...)
    metrics: dict[str, float]  # logged at step 0 (pred/before, ols/loss)
    texts: dict[str, str] = field(default_factory=dict)  # artifact file -> text (git.diff)
    datasets: tuple[DataRecord, ...] = ()  # logged as MLflow dataset inputs


@dataclass(frozen=True)
class Rows:
    keys: tuple[str, ...]
    steps: np.ndarray  # int64, one per row
    times: np.ndarray  # int64 milliseconds, one per row
    values: np.ndarray  # float64, rows x keys


@dataclass(frozen=True)
class PlotData:
    """What the fit and residual plots are drawn from (at most a few thousand rows)."""

    x: dict[str, np.ndarray]  # "train"/"validation" -> raw inputs
    y: dict[str, np.ndarray]  # -> targets
    predicted: dict[str, np.ndarray]  # -> predictions of the trained model
    feature_names: list[str]
    target_names: list[str]


@dataclass(frozen=True)
class ModelPayload:
    """The trained model as it is served: raw inputs in, predictions out."""

    module: Any  # a torch nn.Module on the CPU, in eval mode (pickled with torch)
    example: np.ndarray  # a few raw input rows
    output: np.ndarray  # the model's output for them
    feature_names: list[str]
    target_names: list[str]
    register: str | None = None
    alias: str = "current"
    format: str = "pickle"  # or "pt2" (tracking.model_format)


@dataclass(frozen=True)
class FinalReport:
    status: str  # FINISHED | FAILED | KILLED
    step: int  # where the final metrics are logged
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # one line, for the trainlab.error tag
    texts: dict[str, str] = field(default_factory=dict)  # artifact file -> text (error.txt)
    plots: PlotData | None = None
    model: ModelPayload | None = None


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    run_name: str
    experiment_id: str
    uri: str
    model_uri: str | None = None
    warnings: tuple[str, ...] = ()  # what went wrong while recording, without losing the run
    verification: tuple[str, ...] = ()  # a rerun's comparison with its original, as printed


@dataclass(frozen=True)
class Commit:
    """A checkpoint the trainer has written (`staged`); once every row sent before this message
    is in the store it becomes `last` (renamed, atomic) and the run's artifacts."""

    step: int  # its global step: the rows of steps < step belong to it
    staged: str  # <folder>/last.ckpt.partial, written and fsynced by the trainer
    last: str  # <folder>/last.ckpt
    best_rank: int | None = None  # the rank (1 = best) it takes among the best k, if any
    best_count: int = 0  # k
    tags: dict[str, str] = field(default_factory=dict)  # what each best-<i> slot now holds


@dataclass(frozen=True)
class ResumeQuery:
    """Which run to continue: `run_id`, or this job's latest unfinished run (by job key, and
    cluster job when given) that has a committed checkpoint."""

    uri: str
    experiment_name: str
    run_id: str | None = None
    job_key: str | None = None
    cluster_job: str | None = None


@dataclass(frozen=True)
class ResumeState:
    run_id: str
    status: str
    committed_step: int | None  # None: a run recorded before commits (its last.ckpt is the end)
    checkpoint_dir: str | None  # where its trainer kept last.ckpt (may be gone or elsewhere)
    objective: float | None = None  # a FINISHED run's final val (else train) loss


@dataclass(frozen=True)
class FetchRequest:
    uri: str
    run_id: str
    artifacts: tuple[str, ...]
    folder: str


@dataclass(frozen=True)
class SweepSpec:
    uri: str
    experiment_name: str
    run_name: str
    tags: dict[str, str]
    params: dict[str, str]
    sweep_dir: str
    swept_keys: tuple[str, ...]
    artifact_root: str | None = None


@dataclass(frozen=True)
class SweepEnd:
    stopped: str | None  # why the sweep stopped early (sweep.stop_on_failure), if it did
    error: str | None = None  # the sweep itself failed (launcher error ...): parent FAILED
    interrupted: bool = False  # Ctrl-C or SIGTERM: parent KILLED


@dataclass(frozen=True)
class SweepOutcome:
    parent_run_id: str
    summary: str  # the table and the best child, as printed
    problem: str | None  # why the command should exit non-zero
    warning: str | None  # jobs that failed in a sweep that goes on
