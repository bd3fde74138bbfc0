"""A recorder process that dies mid-run (SIGKILL: the OOM killer, a user's kill) is replaced: a new
recorder continues the same run, the fit rolls back to what is durable and trains on, and the run
ends FINISHED with every step once, value for value the history of an uninterrupted run (CPU,
float64, same seed). When the replacement dies too, the trainer ends the run KILLED itself, with
a reason tag and the resume command, and that resume finishes it just as exactly.

The runs are in-process (`train_in_process`); the recorder is the real separate process, killed
from a thread that watches the real store.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import all_runs, history, store
from trainlab import cli

pytestmark = pytest.mark.slow  # real recorder processes killed mid-run

# Momentum and a step schedule: the optimizer's and the scheduler's state must come back too.
COMMON = (
    "print_every=0", "device.precision=64", "optimizer.momentum=0.9", "optimizer.lr=0.001",
    "scheduler=step", "scheduler.step_size=300", "tracking.plots=false",
    "tracking.log_model=false", "seed=5", "max_epochs=1000", "experiment_name=parts",
)  # fmt: skip
EVERY_100 = "checkpoint.every_n_steps=100"
KEYS = ("train/loss", "weight/0_0", "bias/0", "train/lr", "pred/before", "ols/loss")
STEP_TAG = "trainlab.checkpoint.step"
STOPPED = "trainlab-train: warning: the recorder process stopped (exit status -9); a new one"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, empty_store) -> dict[str, list[tuple[int, float]]]:
    """The history of the run never interrupted (once for the module, through the real entry)."""
    home = tmp_path_factory.mktemp("whole")
    shutil.copy(empty_store, home / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRAINLAB_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("HYDRA_FULL_ERROR", raising=False)
        patch.setattr(sys, "argv", ["trainlab-train", *COMMON, EVERY_100])
        assert cli.main() == 0
    client = store(home)
    (run,) = all_runs(client)
    return {key: history(client, run.info.run_id, key) for key in (*KEYS, "final/train_loss")}


def same_history(actual: list, expected: list, key: str) -> bool:
    """Step for step the same values; `ols/loss`, computed once from the data by LAPACK (0 for
    the seed's exact line), within 1e-12: its last bits follow the memory it is given
    (0.0 in one process, 6.4e-31 in another), not anything the run recorded."""
    if key != "ols/loss":
        return actual == expected
    return [s for s, _ in actual] == [s for s, _ in expected] and all(
        v == pytest.approx(w, abs=1e-12) for (_, v), (_, w) in zip(actual, expected, strict=True)
    )


def query(database: Path, sql: str) -> list[tuple]:
    """The run's rows of the store, read with sqlite3 (the watcher needs nothing of MLflow)."""
    try:
        with sqlite3.connect(database, timeout=10) as con:
            return con.execute(sql).fetchall()
    except sqlite3.Error:
        return []


def recorders_of(pid: int) -> set[int]:
    """The recorder processes of process `pid` (its children running trainlab.recorder)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid and b"trainlab.recorder" in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


class Killer(threading.Thread):
    """SIGKILLs the run's recorder `kills` times, each time once that recorder has committed a
    checkpoint (`when="commit"`), or once 300 more rows are in the store before any checkpoint
    (`"rows"`); with `replacement=True` the second kill hits the new recorder as soon as it
    exists, before it could re-open the run."""

    def __init__(self, database: Path, kills: int, when: str, replacement: bool = False) -> None:
        super().__init__(daemon=True)
        self.database, self.kills, self.when, self.replacement = database, kills, when, replacement
        self.killed: list[int] = []
        self.committed_at_kills: list[str | None] = []
        self.stop = False

    def run(self) -> None:
        rows_seen = 0
        # Recorders this process already has (earlier in-process tests' own) are not the
        # replacement: it is started after the first kill.
        existing = recorders_of(os.getpid())
        while len(self.killed) < self.kills and not self.stop:
            time.sleep(0.01)
            if self.replacement and self.killed:
                fresh = recorders_of(os.getpid()) - set(self.killed) - existing
                if fresh:
                    self.kill(min(fresh))
                continue
            tags = dict(query(self.database, "SELECT key, value FROM tags"))
            pid = tags.get("trainlab.recorder_pid")
            if pid is None or int(pid) in self.killed:
                continue  # the replacement has not re-opened the run yet
            if self.when == "commit" and tags.get(STEP_TAG) not in (None, *self.committed_at_kills):
                self.kill(int(pid))
            elif self.when == "rows" and STEP_TAG not in tags:
                rows = query(self.database, "SELECT COUNT(*) FROM metrics WHERE key='train/loss'")
                if rows and rows[0][0] > rows_seen + 300:
                    rows_seen = rows[0][0]
                    self.kill(int(pid))

    def kill(self, pid: int) -> None:
        tags = dict(query(self.database, "SELECT key, value FROM tags"))
        self.committed_at_kills.append(tags.get(STEP_TAG))
        os.kill(pid, signal.SIGKILL)
        self.killed.append(pid)


def train_while(killer: Killer, train_in_process, *args: str) -> tuple[int, str, str]:
    killer.start()
    try:
        return train_in_process(*args)
    finally:
        killer.stop = True
        killer.join()


@pytest.mark.parametrize(
    ("kills", "when", "checkpoints"),
    [(1, "commit", EVERY_100), (2, "commit", EVERY_100), (1, "rows", "checkpoint.every_n_steps=null")],
    ids=["once", "twice", "before_the_first_checkpoint"],
)  # fmt: skip
def test_a_killed_recorder_is_replaced_and_the_run_equals_an_uninterrupted_one(
    train_in_process, client, home, uninterrupted, kills, when, checkpoints
):
    # Before its first checkpoint (every 60 s) a run's rows are written as they come: the fit
    # goes back to its start, and the new recorder skips the steps the store already holds.
    killer = Killer(home / "mlflow.db", kills, when)
    status, out, err = train_while(killer, train_in_process, *COMMON, checkpoints)
    assert status == 0, err
    assert len(killer.killed) == kills
    assert out.count(STOPPED) == kills
    (run,) = all_runs(client)
    assert run.info.status == "FINISHED" and "trainlab.failure" not in run.data.tags
    for key, expected in uninterrupted.items():  # every step once, the very same values
        assert same_history(history(client, run.info.run_id, key), expected, key), key
    assert int(run.data.tags["trainlab.recorder_pid"]) not in killer.killed


def test_a_replacement_that_dies_too_ends_the_run_killed_and_resume_finishes_it(
    train_in_process, client, home, uninterrupted
):
    killer = Killer(home / "mlflow.db", 2, "commit", replacement=True)
    status, out, err = train_while(killer, train_in_process, *COMMON, EVERY_100)
    assert status == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("trainlab-train: error: the recorder process stopped (exit status -9)")
    assert "the one started in its place stopped too" in line
    (run,) = all_runs(client)
    run_id = run.info.run_id
    assert run.info.status == "KILLED"  # ended by a third recorder, for the trainer
    assert run.data.tags["trainlab.failure"] == "recorder_stopped"
    assert "the one started in its place stopped too" in run.data.tags["trainlab.error"]
    assert f"Resume with: trainlab-train resume={run_id}" in out
    committed = int(run.data.tags[STEP_TAG])
    assert [s for s, _ in history(client, run_id)] == list(range(committed))  # what is durable

    status, out, err = train_in_process(f"resume={run_id}")
    assert status == 0, err
    assert f"Resuming run {run_id} at step {committed}" in out
    resumed = client.get_run(run_id)
    assert resumed.info.status == "FINISHED" and "trainlab.failure" not in resumed.data.tags
    for key, expected in uninterrupted.items():
        assert same_history(history(client, run_id, key), expected, key), key
