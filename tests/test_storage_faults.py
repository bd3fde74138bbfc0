"""Where a run is kept fails under a running job: a disk that fills up (a small file system the
test mounts), a store that stops taking writes (a read-only bind mount), a store removed, an
artifact folder that cannot be written. Each is one line on stderr (MLflow's and SQLAlchemy's
tracebacks go to the job's log file), the run is FAILED with a reason tag as far as the store
still takes writes, the resume command is printed when a checkpoint is kept, and the resume, once
the store is usable again, records every step once.

Mounting needs root (as here and in CI); elsewhere these tests are skipped, and fail under CI=true.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import all_runs, history, run_cli, store

LONG = (
    "print_every=0", "max_epochs=20000", "checkpoint.every_n_steps=100", "tracking.plots=false",
    "tracking.log_model=false",
)  # fmt: skip
STEP_TAG = "trainlab.checkpoint.step"


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    # Remounting read-only is refused while a write is under way through the mount (the
    # recorder's SQLite journal, opened through the new bind mount): try again a moment later.
    for _ in range(100):
        if done.returncode == 0 or "busy" not in done.stderr:
            break
        time.sleep(0.01)
        done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"mount {' '.join(args)}: {done.stderr.strip()}")
        pytest.skip(f"cannot mount here (root needed): {done.stderr.strip()}")


@contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `folder`, unmounted at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@contextmanager
def read_only_later(folder: Path) -> Iterator[Callable[[], None]]:
    """make_read_only() bind-mounts `folder` read-only over itself (files already open stay
    writable, as on a file system remounted under a running job: new files cannot be made)."""
    mounted = []

    def make_read_only() -> None:
        mount("--bind", str(folder), str(folder))
        mounted.append(folder)
        mount("-o", "remount,ro,bind", str(folder))

    try:
        yield make_read_only
    finally:
        for path in mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def after_first_commit(database: Path, action: Callable[[], None]) -> threading.Thread:
    """A thread that calls action() once the run in `database` has committed a checkpoint."""

    def watch() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with sqlite3.connect(database, timeout=10) as con:
                    query = "SELECT COUNT(*) FROM tags WHERE key = ?"
                    if con.execute(query, (STEP_TAG,)).fetchone()[0]:
                        break
            except sqlite3.Error:
                pass
            time.sleep(0.02)
        action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainlab-train: error: "), err
    return lines[0]


def assert_every_step_once(client, run_id: str, steps: int | None = None) -> int:
    recorded = [s for s, _ in history(client, run_id)]
    assert recorded == list(range(len(recorded))), "a gap or a step twice"
    for key in ("weight/0_0", "bias/0"):
        assert [s for s, _ in history(client, run_id, key)] == recorded, key
    if steps is not None:
        assert len(recorded) == steps
    return len(recorded)


@pytest.mark.slow
def test_a_full_disk_is_one_line_the_run_failed_and_resume_finishes_it(tmp_path, empty_store):
    """The issue's case: TRAINLAB_HOME on a 2 MB file system (the empty store takes 1 MB)."""
    with small_disk(tmp_path / "home", "2m") as home:
        shutil.copy(empty_store, home / "mlflow.db")
        done = run_cli(*LONG, home=home)
        assert done.returncode == 2
        line = one_error_line(done.stderr)  # no MLflow or SQLAlchemy traceback before it
        assert f"the disk of {home / 'mlflow.db'} is full" in line
        assert "database or disk is full" in line and line.count("disk is full") == 1
        assert "Background on this error" not in line and "[SQL:" not in line
        client = store(home)
        (run,) = all_runs(client)
        run_id = run.info.run_id
        assert run.info.status == "FAILED"
        assert run.data.tags["trainlab.failure"] == "recording_failed"
        assert f"Resume with: trainlab-train resume={run_id}" in done.stdout
        log = next(home.glob("outputs/*/*/*.log")).read_text()
        assert "Traceback" in log and "database or disk is full" in log  # MLflow's, kept there
        with sqlite3.connect(home / "mlflow.db") as con:
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)

        stopped = assert_every_step_once(client, run_id)
        subprocess.run(["mount", "-o", "remount,size=64m", str(home)], check=True)
        resumed = run_cli(f"resume={run_id}", f"max_epochs={stopped + 300}", home=home)
        assert resumed.returncode == 0, resumed.stderr
        assert client.get_run(run_id).info.status == "FINISHED"
        assert_every_step_once(client, run_id, stopped + 300)  # nothing durable was lost


@pytest.mark.parametrize("place", ["store", "artifacts"])
def test_a_store_or_artifact_folder_that_stops_taking_writes_is_one_line_then_resumes(
    train_in_process, home, tmp_path, empty_store, place
):
    # The store in a folder of its own (the job's checkpoints stay writable), or the default
    # store with its artifacts under TRAINLAB_HOME/mlartifacts.
    folder = tmp_path / "store" if place == "store" else home
    folder.mkdir(exist_ok=True)
    shutil.copy(empty_store, folder / "mlflow.db")
    uri = f"tracking.uri=sqlite:///{folder / 'mlflow.db'}"
    target = folder if place == "store" else home / "mlartifacts"
    with read_only_later(target) as make_read_only:
        watcher = after_first_commit(folder / "mlflow.db", make_read_only)
        if place == "store":
            # A process of its own: the run it leaves RUNNING is resumed once it is gone.
            done = run_cli(*LONG, uri, home=home)
            status, out, err = done.returncode, done.stdout, done.stderr
        else:
            status, out, err = train_in_process(*LONG, uri)
        watcher.join()
        assert status == 2
        line = one_error_line(err)
        if place == "store":
            assert f"{folder / 'mlflow.db'} cannot be written" in line
            # Not even the ending could be written: it says so, and a resume ends it later.
            assert "could not be ended either: it stays RUNNING" in out
        else:
            assert f"cannot write in {target}" in line and "Read-only file system" in line
    client = store(folder)
    (run,) = all_runs(client)
    run_id = run.info.run_id
    assert f"Resume with: trainlab-train resume={run_id}" in out
    if place == "artifacts":
        assert run.info.status == "FAILED"
        assert run.data.tags["trainlab.failure"] == "recording_failed"
        assert run.data.tags["trainlab.error"] in line
    stopped = assert_every_step_once(client, run_id)

    status, out, err = train_in_process(f"resume={run_id}", uri, "max_epochs=1500")
    assert status == 0, err
    assert client.get_run(run_id).info.status == "FINISHED"
    assert stopped < 1500
    assert_every_step_once(client, run_id, 1500)


def test_a_store_removed_under_a_running_job_is_one_line(train_in_process, tmp_path, empty_store):
    folder = tmp_path / "store"
    folder.mkdir()
    database = folder / "mlflow.db"
    shutil.copy(empty_store, database)
    watcher = after_first_commit(database, database.unlink)
    status, out, err = train_in_process(*LONG, f"tracking.uri=sqlite:///{database}")
    watcher.join()
    assert status == 2
    line = one_error_line(err)
    assert f"{database} was removed while the run was recorded" in line
    assert "went with the store that was removed" in out
    assert "Resume with" not in out  # there is no run left to resume
    assert not database.exists()  # nothing made a new, empty store in its place
