"""The embedded store under concurrent first use, and a store left half-made: real
`trainlab-train` processes started together on one SQLite file, and a store broken the way a
cut-short MLflow migration leaves it, met by `trainlab-train`, `trainlab-predict` and `make ui`.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import all_runs, history, run_cli, store
from trainlab.commands import dashboard, predict
from trainlab.commands import store as store_command
from trainlab.tracking.store_checks import sqlite_problem

EPOCHS = 300
LEAN = ("print_every=0", f"max_epochs={EPOCHS}", "tracking.plots=false", "tracking.log_model=false")


def start_together(home: Path, jobs: int, *args: str) -> list[subprocess.CompletedProcess]:
    """`jobs` trainlab-train processes started at the same moment on the store under `home`."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [
            pool.submit(run_cli, *LEAN, f"seed={i}", *args, home=home, timeout=400)
            for i in range(jobs)
        ]
        return [f.result() for f in futures]


def assert_all_recorded(home: Path, runs_expected: int) -> None:
    """Every run FINISHED with every step of every per-step metric, and its final metrics."""
    client = store(home)
    runs = all_runs(client)
    assert len(runs) == runs_expected
    for run in runs:
        assert run.info.status == "FINISHED", run.data.tags
        for key in ("train/loss", "weight/0_0", "bias/0", "ols/gap"):
            assert [s for s, _ in history(client, run.info.run_id, key)] == list(range(EPOCHS))
        for key in ("pred/before", "pred/after", "ols/loss", "final/train_loss"):
            assert key in run.data.metrics


@pytest.mark.slow
def test_four_trainers_on_a_new_store_then_again_on_it(fresh_home):
    """Processes that start together race to create the store, then its experiment; on the store
    that then exists, they race to write it."""
    for round_ in (1, 2):
        started = time.monotonic()
        done = start_together(fresh_home, 4, "tracking.flush_every_seconds=0.05")
        assert [d.returncode for d in done] == [0] * 4, [d.stderr[-2000:] for d in done]
        assert not [d.stderr for d in done if "Traceback" in d.stderr]
        assert_all_recorded(fresh_home, 4 * round_)
        print(f"round {round_}: 4 trainers in {time.monotonic() - started:.1f} s")
    assert sqlite_problem(fresh_home / "mlflow.db") is None


def half_migrate(database: Path) -> None:
    """What a migration cut short leaves: alembic's copy of a table beside the table."""
    with sqlite3.connect(database) as con:
        con.execute("CREATE TABLE _alembic_tmp_experiments AS SELECT * FROM experiments WHERE 0")


def one_line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_half_migrated_store_is_one_line_everywhere_and_repairs(
    train_in_process, home, monkeypatch, capsys
):
    database = home / "mlflow.db"
    assert train_in_process("print_every=0", "max_epochs=3", "tracking.plots=false")[0] == 0
    (run,) = all_runs(store(home))
    half_migrate(database)
    uri = f"sqlite:///{database}"

    started = time.monotonic()
    status, _, err = train_in_process("print_every=0", "max_epochs=3")
    line = one_line(err, "trainlab-train")
    assert status == 2 and time.monotonic() - started < 5  # before torch, before any run
    assert "is half-migrated: _alembic_tmp_experiments" in line
    assert f"trainlab-store repair --store {uri}" in line

    def never_serve(*args: object) -> None:  # the dashboard must stop before it serves
        raise AssertionError("the dashboard started a server on a broken store")

    monkeypatch.setattr(dashboard.os, "execv", never_serve)
    for prog, call in (
        ("trainlab-predict", lambda: predict.main([run.info.run_id, "5"])),
        ("trainlab-ui", lambda: dashboard.main(["--port", "1"])),  # stops before it binds
    ):
        with pytest.raises(SystemExit) as stop:
            call()
        assert stop.value.code == 2
        assert "is half-migrated: _alembic_tmp_experiments" in one_line(
            capsys.readouterr().err, prog
        )

    store_command.main(["repair"])  # TRAINLAB_HOME's store
    out = capsys.readouterr().out
    assert "dropped _alembic_tmp_experiments" in out and "backup" in out
    assert len(list(home.glob("mlflow.db.backup-*"))) == 1
    assert sqlite_problem(database) is None
    assert train_in_process("print_every=0", "max_epochs=3", "tracking.plots=false")[0] == 0
    runs = all_runs(store(home))
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}  # nothing lost


def test_store_of_an_older_mlflow_is_one_line(train_in_process, home, empty_store):
    with sqlite3.connect(home / "mlflow.db") as con:  # the schema version an older MLflow wrote
        con.execute("UPDATE alembic_version SET version_num = '867495a8f9d4'")
    status, _, err = train_in_process("print_every=0", "max_epochs=3")
    line = one_line(err, "trainlab-train")
    assert status == 2
    assert "its MLflow schema is older than this MLflow's (found version 867495a8f9d4" in line
    assert "trainlab-store repair" in line
    shutil.copy(empty_store, home / "mlflow.db")  # the store the fixture cleans up


def test_deleted_experiment_is_one_line_before_training(train_in_process, home, client):
    client.delete_experiment(client.create_experiment("gone"))
    status, out, err = train_in_process("print_every=0", "experiment_name=gone")
    assert status == 2
    assert "experiment_name='gone': that experiment was deleted" in one_line(err, "trainlab-train")
    assert "Prediction after training" not in out  # it stopped before the fit
    assert all_runs(client) == []


def test_relative_store_paths_are_made_absolute(train_in_process, home, monkeypatch, tmp_path):
    """A store named relative to the current folder lands there, and is named absolutely in
    what the run prints and records, so that `make ui --store`/predict find it from anywhere;
    so does a relative TRAINLAB_HOME, also for the processes a run starts."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    status, out, err = train_in_process(
        "tracking.uri=sqlite:///rel/x.db", "print_every=0", "max_epochs=2", "tracking.plots=false"
    )
    assert status == 0, err
    assert f"store sqlite:///{cwd / 'rel' / 'x.db'}" in out
    assert (cwd / "rel" / "x.db").is_file()

    monkeypatch.setenv("TRAINLAB_HOME", "relhome")
    status, out, err = train_in_process("print_every=0", "max_epochs=2", "tracking.plots=false")
    assert status == 0, err
    assert f"store sqlite:///{cwd / 'relhome' / 'mlflow.db'}" in out
    assert (cwd / "relhome" / "mlflow.db").is_file()
    assert Path(os.environ["TRAINLAB_HOME"]) == cwd / "relhome"  # for the jobs it starts
