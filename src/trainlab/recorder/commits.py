"""Metrics and checkpoints commit together (the recorder's side of periodic checkpoints).

The guarantee: once a run has a checkpoint, its metric history in MLflow never runs ahead of
its last durable one. After any kill, a resume from that checkpoint continues the history with
no gap and no repeated step (a cut-short commit, below, is the one case where the history goes
further, and the resume then skips what is there).

How: the trainer hands its rows over as always; once the run has a checkpoint, the recorder
*holds* them (numpy arrays, in memory). At a checkpoint the trainer flushes its rows, writes
`last.ckpt.partial` and sends COMMIT(step). The recorder then, in this order:

1. tags `trainlab.checkpoint.committing=<step>` (only when it holds rows),
2. writes the held rows (every row sent before the COMMIT: steps < step),
3. fsyncs `last.ckpt.partial`, renames it over `last.ckpt` in the job's folder (atomic) and
   links the best-k slots,
4. copies `last.ckpt` (and the best slots that changed) into the run's artifacts,
5. tags `trainlab.checkpoint.step=<step>` (and `.committing`, `.dir`): the commit mark.

Before its first checkpoint a run's rows are written as they come: resume=auto skips such a
run and resume=<id> refuses it, except a continued sweep's job, whose trial continues in its own
run from step 0 with every step the store holds skipped (`recorded_ends`), so nothing is
recorded twice; a run shorter than the interval records and costs exactly what it did before
(the dashboard also shows its first minute live).

Every death order (the recorder runs in its own process and session, so it outlives the trainer
unless the whole job or machine goes):

- the trainer alone (SIGKILL, OOM): the recorder handles every message sent before the death,
  a COMMIT included, then drops the rows after the last commit (the resume computes them
  again) and ends the run KILLED; history, `last.ckpt` and the artifact end at the same step.
- the trainer while writing `last.ckpt.partial`: the COMMIT was never sent; `last.ckpt` is the
  previous one, and the partial file is ignored.
- the recorder alone (the OOM killer, a crash): the rows it held die with it. The trainer notices
  at its next hand-over and starts a new recorder, which takes the run over (tracking/run.py) and
  reads what the store holds (`recorded_rows`): the last commit, or the part of a commit cut
  short, as in the next case; the fit rolls back to the checkpoint a resume would take (before
  the first commit: to its start, the rows so far having been written as they came) and the
  new recorder skips, per metric, every step already in the store.
- trainer and recorder together (node failure, `scancel --signal=KILL`) between commits: the
  store holds exactly the last commit. During step 2: the store holds part of the segment, and
  `committing` > `step` says so; the resume takes the committed checkpoint and the recorder
  skips, per metric, the steps already in the store (read once, only in this case). During
  steps 3-4: the rows are all in; `last.ckpt` in the folder is the new one (or the old one, if
  the rename did not happen), the artifact may be the old one or torn: the resume takes the
  newest readable of the two whose step is at least the committed one.

Best-k: the artifact store has no delete in MLflow's client for every store, so the best k
checkpoints live in fixed slots `checkpoints/best-1.ckpt` (the best) .. `best-k.ckpt`,
overwritten as better ones come; a tag `trainlab.checkpoint.best-<i>` says which step and value
each holds. There are never more than k + 1 checkpoint files, locally or in the artifacts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from trainlab.checkpoints.files import ARTIFACT_DIR, fsync_path, link_best, sync_folder
from trainlab.config.checkpoint import CLUSTER_JOB_TAG, JOB_KEY_TAG
from trainlab.tracking.messages import Commit, EndStatus, ResumeQuery, ResumeState, Rows
from trainlab.tracking.tags import objective_value

STEP_TAG = "trainlab.checkpoint.step"  # the commit mark: rows of steps < it are all in
COMMITTING_TAG = "trainlab.checkpoint.committing"  # > STEP_TAG: a commit was cut short
DIR_TAG = "trainlab.checkpoint.dir"
BEST_TAG_PREFIX = "trainlab.checkpoint.best-"  # + the slot: "step <n>, <metric>=<value>"
HELD_PER_WRITE = 20_000  # values of held rows written together at a commit
FINISHED, FAILED = EndStatus.FINISHED.value, EndStatus.FAILED.value  # as the store says them


class CommitGate:
    """Holds one run's rows until a checkpoint commits them."""

    def __init__(
        self, client: MlflowClient, run_id: str, write: Callable[..., None], gated: bool
    ) -> None:
        self.client, self.run_id, self.write, self.gated = client, run_id, write, gated
        self.held: list[Rows] = []
        self.committed = False  # a checkpoint exists that a resume would start from

    def rows(self, *batch: Rows) -> None:
        if self.gated and self.committed:
            self.held.extend(batch)
        else:  # nothing to resume from yet: nothing can be recorded twice (see above)
            self.write(*batch)

    def commit(self, commit: Commit) -> None:
        held, self.held = self.held, []
        if held:
            self._tags({COMMITTING_TAG: str(commit.step)})
            self.write_held(held)
        last = Path(commit.last)
        fsync_path(Path(commit.staged))  # its bytes on disk before the rename makes it the one
        os.replace(commit.staged, last)
        sync_folder(last.parent)
        changed = [last, *link_best(last, commit.best_rank, commit.best_count)]
        for path in changed:
            self.client.log_artifact(self.run_id, str(path), ARTIFACT_DIR)
        tags = {STEP_TAG: str(commit.step), COMMITTING_TAG: str(commit.step)}
        self._tags({**tags, DIR_TAG: str(last.parent), **commit.tags})
        self.committed = True

    def release(self) -> None:
        """The run ends for good (FINISHED, FAILED) or nothing can resume it: write what is held.
        The `committing` tag marks history beyond the last checkpoint, for a later resume."""
        held, self.held = self.held, []
        if held and self.committed:
            end = max(int(rows.steps.max()) for rows in held if len(rows.steps)) + 1
            self._tags({COMMITTING_TAG: str(end)})
        self.write_held(held)

    def end(self, resumable: bool) -> None:
        """Drop the rows after the last commit when a resume will compute them again."""
        if resumable and self.committed:
            self.held = []
        else:
            self.release()

    def write_held(self, held: list[Rows]) -> None:
        """Several hand-overs a write (a transaction of the store each), up to HELD_PER_WRITE
        values: the rows written are Python objects for a moment, the held ones stay arrays."""
        start, values = 0, 0
        for end, rows in enumerate(held, 1):
            values += rows.values.size
            if values >= HELD_PER_WRITE or end == len(held):
                self.write(*held[start:end])
                start, values = end, 0

    def _tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def recorded_ends(client: MlflowClient, run_id: str) -> dict[str, int]:
    """The last step recorded of each metric of a run whose commit was cut short, or that has
    none (see above): a resume skips those steps instead of recording them twice."""
    run = client.get_run(run_id)
    tags = run.data.tags
    committed, committing = tags.get(STEP_TAG), tags.get(COMMITTING_TAG)
    # No commit mark: the run stopped before its first checkpoint, its rows were written as
    # they came, and the fit starts again from step 0: every step the store holds is skipped.
    since = -1 if committed is None else int(committed)
    if committed is not None and (committing is None or int(committing) <= since):
        return {}
    ends = {}
    for key in run.data.metrics:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        if steps and max(steps) >= since:
            ends[key] = max(steps)
    return ends


def recorded_rows(client: MlflowClient, run: Run) -> list[Rows]:
    """Every metric of a run as the store holds it, one Rows per metric: what a recorder that
    takes the run over (the one before it stopped) skips when the fit goes over those steps
    again, and what its plots start from. Per metric the store holds a prefix of the steps:
    rows are written in order, so everything up to its last step is there."""
    found = []
    for key in run.data.metrics:
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        found.append(
            Rows(
                keys=(key,),
                steps=np.array([m.step for m in history], dtype=np.int64),
                times=np.array([m.timestamp for m in history], dtype=np.int64),
                values=np.array([[m.value] for m in history], dtype=np.float64).reshape(-1, 1),
            )
        )
    return found


def find_resumable(client: MlflowClient, query: ResumeQuery) -> ResumeState | None:
    """The run a resume continues: the one named, or this job's latest run that did not end
    for good (RUNNING after a hard kill, KILLED) and has a committed checkpoint."""
    if query.run_id is not None:
        return _state(client.get_run(query.run_id))
    experiment = client.get_experiment_by_name(query.experiment_name)
    if experiment is None or query.job_key is None:
        return None
    wanted = f"tags.`{JOB_KEY_TAG}` = '{query.job_key}'"
    if query.cluster_job is not None:
        wanted += f" and tags.`{CLUSTER_JOB_TAG}` = '{query.cluster_job}'"
    runs = client.search_runs(
        [experiment.experiment_id], wanted, order_by=["attributes.start_time DESC"]
    )
    for run in runs:
        # A requeue of a job that had already finished (its notice came after the end) trains
        # nothing again: the caller reports the finished run.
        if query.cluster_job is not None and run.info.status == FINISHED:
            return _state(run)
        if query.ended_too:  # a continued sweep's job: its run, however far it came
            return _state(run)
        if run.info.status not in (FINISHED, FAILED) and STEP_TAG in run.data.tags:
            return _state(run)
    return None


def _state(run: Run) -> ResumeState:
    tags = run.data.tags
    step = tags.get(STEP_TAG)
    metrics = run.data.metrics
    objective = objective_value(metrics, tags)
    return ResumeState(
        run_id=run.info.run_id,
        status=run.info.status,
        committed_step=int(step) if step is not None else None,
        checkpoint_dir=tags.get(DIR_TAG),
        objective=objective,
        experiment_id=run.info.experiment_id,
        best=best_slots(tags),
    )


def best_slots(tags: dict[str, str]) -> tuple[tuple[int, str], ...]:
    """(step, artifact) of each best-k slot, as its tag `trainlab.checkpoint.best-<i>` says
    (`step 40, val/loss=0.5`): the committed steps a fork may start from beside the last."""
    found = []
    for key, value in tags.items():
        slot, held = key.removeprefix(BEST_TAG_PREFIX), value.split(",", 1)[0].split()
        if key.startswith(BEST_TAG_PREFIX) and slot.isdigit() and held[1:2] and held[1].isdigit():
            found.append((int(held[1]), f"{ARTIFACT_DIR}/best-{slot}.ckpt"))
    return tuple(sorted(found))
