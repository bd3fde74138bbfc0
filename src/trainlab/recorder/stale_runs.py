"""Runs left RUNNING by processes that died without a word, found and ended (MLflow side).

A stale run (tracking/liveness.py) is ended KILLED with the tags `trainlab.failure=stale` and
`trainlab.error=<why>`, and with its last heartbeat as its end time; everything it recorded stays.
This happens whenever someone looks: `trainlab-store stale --mark` (`make stale`), `make ui`, a
sweep's summary (its children), and a resume of the run (which then records how the attempt
before it ended in `trainlab.resumed_after`, and goes on).
"""

from __future__ import annotations

import time

from mlflow.entities import Run, RunStatus, RunTag, ViewType
from mlflow.tracking import MlflowClient

from trainlab.errors import ConfigError
from trainlab.tracking.liveness import (
    FAILURE_TAG,
    STALE,
    last_seen_ms,
    running_here,
    staleness,
)
from trainlab.tracking.tags import ERROR_TAG

RESUMED_TAG = "trainlab.resumed_after"  # how the attempt before a resume ended, when it was stale


def running_runs(client: MlflowClient) -> list[Run]:
    """Every RUNNING run of every active experiment."""
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return []
    return every_run(client, experiments, "attributes.status = 'RUNNING'")


def every_run(client: MlflowClient, experiments: list[str], filter_string: str) -> list[Run]:
    """All the runs a search finds, page after page (MlflowClient returns one page a call)."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            experiments, filter_string=filter_string, max_results=1000, page_token=token
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def stale_runs(client: MlflowClient, now: float | None = None) -> list[tuple[Run, str]]:
    """(run, why it is stale) for every RUNNING run whose processes are gone."""
    now = time.time() if now is None else now
    found = []
    for run in running_runs(client):
        reason = staleness(run.data.tags, now)
        if reason is not None:
            found.append((run, reason))
    return found


def mark_stale(
    client: MlflowClient, run: Run, reason: str, tags: dict[str, str] | None = None
) -> None:
    """End a stale run KILLED, saying why, at its last sign of life."""
    run_id = run.info.run_id
    if tags is None:
        tags = {FAILURE_TAG: STALE, ERROR_TAG: f"stale run: {reason}"}
    client.log_batch(run_id, tags=[RunTag(k, v[:5000]) for k, v in tags.items()])
    end = last_seen_ms(run.data.tags, int(time.time() * 1000))
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED), end_time=end)


def end_stale_runs(client: MlflowClient) -> list[tuple[Run, str]]:
    """Mark every stale run; returns them."""
    found = stale_runs(client)
    for run, reason in found:
        mark_stale(client, run, reason)
    return found


def before_resume(client: MlflowClient, run: Run) -> None:
    """A run about to be resumed: refused while a process on this host still records it; ended
    as stale first (so its history says so) when its processes are gone."""
    if run.info.status != RunStatus.to_string(RunStatus.RUNNING):
        return
    holder = running_here(run.data.tags)
    if holder is not None:
        raise ConfigError(
            f"resume={run.info.run_id}: the run is still RUNNING ({holder} on this host); "
            "expected a run that ended (stop that process first, or wait for it)"
        )
    reason = staleness(run.data.tags)
    if reason is not None:
        # Not trainlab.failure: the run goes on and may well finish; this says what came before.
        mark_stale(client, run, reason, {RESUMED_TAG: f"stale: {reason}"})
