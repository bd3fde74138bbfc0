"""V1: the recorder's CPU per stored metric value, whole rows of a tracked run.

The recorder's own dispatcher, in this process, handles the hand-overs of a tracked MLP run as
the trainer sends them (pickled; 8 values a step: the loss, the rate and a norm per tensor;
handed over at most 1000 values at a time, tracking/run.py, with the `val/loss` rows, one an
epoch, of the epochs that ended since the last) into a real SQLite store, and the process's
CPU time is divided by the values stored. The same messages for a second run go through
MLflow's `log_batch` (the path a store other than MLflow's SQL store at the pinned schema takes:
recorder/bulk_metrics.py); the two runs take turns, round by round.
"""

from __future__ import annotations

import pickle
import statistics
import time
import uuid
from pathlib import Path

import numpy as np

from benchmarks.turns import Result, compared
from trainlab.recorder.dispatch import Dispatcher
from trainlab.tracking.messages import EndStatus, FinalReport, HandOver, Rows, RunSpec

KEYS = ("train/loss", "train/lr", "weight/0", "bias/0", "weight/1", "bias/1", "weight/2", "bias/2")
PER_MESSAGE = 1000 // len(KEYS)  # steps a hand-over holds (MAX_PENDING_METRICS values)
EPOCH = 79  # steps an epoch of M1 (20,000 rows in batches of 256)


def messages(steps: int) -> list[bytes]:
    """The pickled hand-overs of a run of `steps` steps, as the trainer sends them: every
    PER_MESSAGE steps the steps' rows, with the `val/loss` rows of the epochs that ended in
    between (a `HandOver` of the two key sets; tracking/run.py)."""
    rng = np.random.default_rng(0)
    sent: list[bytes] = []
    start_ms = int(time.time() * 1000)
    for first in range(0, steps, PER_MESSAGE):
        at = np.arange(first, min(first + PER_MESSAGE, steps), dtype=np.int64)
        rows = Rows(
            keys=KEYS,
            steps=at,
            times=start_ms + at * 3,
            values=rng.normal(size=(len(at), len(KEYS))),
        )
        ends = at[(at + 1) % EPOCH == 0]
        val = Rows(keys=("val/loss",), steps=ends, times=start_ms + ends * 3,
                   values=rng.normal(size=(len(ends), 1)))  # fmt: skip
        handed = HandOver((rows, val)) if len(ends) else rows
        sent.append(pickle.dumps(handed, pickle.HIGHEST_PROTOCOL))
    return sent


def size(message: Rows | HandOver) -> int:
    """The values a hand-over holds."""
    parts = message.rows if isinstance(message, HandOver) else (message,)
    return sum(rows.values.size for rows in parts)


def one_run(dispatcher: Dispatcher, spec: RunSpec, sent: list[bytes], bulk: bool) -> float:
    """CPU seconds per value of the recorder handling `sent` for a new run."""
    token = uuid.uuid4().hex
    dispatcher.handle(token, spec)
    writer = dispatcher.runs[token]
    if not bulk:
        writer.bulk = None  # the path a store the bulk path does not know takes
    values = 0
    start = time.process_time()
    for message in sent:
        handed = pickle.loads(message)
        dispatcher.handle(token, handed)
        values += size(handed)
    spent = time.process_time() - start
    dispatcher.handle(token, FinalReport(status=EndStatus.FINISHED, step=0, metrics={}))
    return spent / values


def v1_stored_value(home: Path, steps: int, rounds: int) -> list[Result]:
    uri = f"sqlite:///{home / 'mlflow.db'}"
    spec = RunSpec(uri=uri, experiment_name="bench_v1", run_name=None, tags={},
                   artifact_root=str(home / "mlartifacts"))  # fmt: skip
    sent = messages(steps)
    dispatcher = Dispatcher(uri)
    try:
        one_run(dispatcher, spec, sent[:2], bulk=True)  # the run's first statements compiled
        bulk, plain = [], []
        for _ in range(rounds):
            plain.append(one_run(dispatcher, spec, sent, bulk=False))
            bulk.append(one_run(dispatcher, spec, sent, bulk=True))
    finally:
        dispatcher.close()
    values = sum(size(pickle.loads(m)) for m in sent)
    what = f"recorder CPU per stored value, {values} values of a tracked MLP run (8 a step), SQLite"
    return [
        # The target is in seconds: the baseline column holds it, the ratio is seconds / target.
        Result("V1", what + ": the bulk path, s per value", 10e-6, statistics.median(bulk), 1.0),
        compared("V1-log_batch", "the same, MLflow's log_batch vs the bulk path (s per value)",
                 plain, bulk, float("inf")),
    ]  # fmt: skip
