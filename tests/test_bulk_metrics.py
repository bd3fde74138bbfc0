"""The recorder's bulk path for metric rows (recorder/bulk_metrics.py) writes exactly what
`MlflowClient.log_batch` writes: the same batches go into two real stores, one each way, and
every row of `metrics` and `latest_metrics`, what `search_runs` and `get_metric_history` return
are compared, on SQLite and on PostgreSQL. An MLflow whose tables differ fails here first: the
guard sends its runs to `log_batch`, and the bulk path is not taken."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tests.helpers import run_cli
from tests.team_service import fresh_database
from trainlab.recorder.bulk_metrics import BulkMetrics, as_metrics, check, for_client
from trainlab.recorder.writer import RunWriter
from trainlab.tracking.messages import Rows, RunSpec

inf, nan = math.inf, math.nan
LEAN = ("tracking.plots=false", "tracking.log_model=false")
ODD_KEYS = ("train/loss", "weight/0 1", "a/b/c d", "val/loss")


def rows(keys: tuple[str, ...], steps: list[int], values: list[list[float]], ms=None) -> Rows:
    steps_array = np.array(steps, dtype=np.int64)
    times = np.array(ms if ms is not None else [1000 + s for s in steps], dtype=np.int64)
    return Rows(keys=keys, steps=steps_array, times=times, values=np.array(values, dtype=float))


def batches() -> list[tuple[Rows, np.ndarray | None]]:
    """What a run hands over, and its hard cases; each with the mask of what to write."""
    wide = tuple(f"layer {i}/norm" for i in range(600))  # more than MLflow's 500-key slices
    rng = np.random.default_rng(0)
    tie = rows(("tie",), [50, 50, 50], [[nan], [0.0], [0.0]], ms=[7, 7, 7])
    overlap = rows(ODD_KEYS, [4, 5, 6], [[4.0, 8.0, 0.5, 1.0]] * 3)
    return [
        (rows(ODD_KEYS, list(range(6)), [[s, -s, 0.5, 1.0] for s in range(6)]), None),
        (rows(ODD_KEYS, [6, 7], [[nan, inf, -inf, 2.0], [1.0, nan, nan, -inf]]), None),
        # out of order, a step logged twice (two values, then the same row twice)
        (rows(ODD_KEYS, [12, 9, 11, 9], [[1, 2, 3, 4], [5, 6, 7, 8], [9, 1, 2, 3], [0, 0, 0, 0]]), None),
        (rows(ODD_KEYS, [13, 13], [[1, 1, 1, 1], [1, 1, 1, 1]]), None),
        (rows(ODD_KEYS, [10, 8], [[1, 2, 3, 4], [5, 6, 7, 8]], ms=[5000, 9000]), None),
        (rows(wide, [0, 1, 2], rng.normal(size=(3, 600)).tolist()), None),
        (tie, None),  # NaN and 0.0 at one step and time: the first stays the latest
        (rows(("tie",), [50], [[-0.0]], ms=[7]), None),  # in the next batch too
        # a resumed run's overlap: steps the store holds, again (same rows, then new values)
        (rows(ODD_KEYS, list(range(6)), [[s, -s, 0.5, 1.0] for s in range(6)]), None),
        (overlap, np.array([[False, True, True, False]] * 3)),
        (rows(ODD_KEYS, [5, 14], [[nan, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]], ms=[1, 2]), None),
    ]  # fmt: skip


def sqlite_store(empty_store: Path, folder: Path, name: str) -> str:
    """A copy of an empty store (creating MLflow's tables takes seconds)."""
    return f"sqlite:///{shutil.copy(empty_store, folder / f'{name}.db')}"


@contextlib.contextmanager
def two_stores(kind: str, empty_store: Path, folder: Path) -> Iterator[tuple[str, str]]:
    if kind == "postgresql":
        with fresh_database() as first, fresh_database() as second:
            yield first, second
    else:
        yield sqlite_store(empty_store, folder, "plain"), sqlite_store(empty_store, folder, "bulk")


def new_run(uri: str, folder: Path) -> tuple[MlflowClient, str]:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("equal", artifact_location=str(folder / "artifacts"))
    return client, client.create_run(experiment).info.run_id


def rows_of(uri: str, name: str) -> list[tuple]:
    """Every row of a table as the database returns it, its run's id left out."""
    engine = sa.create_engine(uri)
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.text(f"SELECT key, value, timestamp, step, is_nan FROM {name}")
            ).all()
    finally:
        engine.dispose()


def table(uri: str, name: str) -> list[tuple]:
    """Every row of a table, its run's id left out, in a fixed order."""
    found = rows_of(uri, name)
    return sorted((k, float(v), int(t), int(s), bool(n)) for k, v, t, s, n in found)


def same(value: float) -> str:
    return repr(float(value))  # NaN equals NaN, -0.0 differs from 0.0


def read_back(client: MlflowClient, run_id: str) -> tuple[dict, dict]:
    """What MLflow's client shows: the run's metrics in a search, each key's history."""
    (run,) = client.search_runs([client.get_run(run_id).info.experiment_id])
    latest = {k: same(v) for k, v in run.data.metrics.items()}
    histories = {
        key: [(m.step, m.timestamp, same(m.value)) for m in client.get_metric_history(run_id, key)]
        for key in run.data.metrics
    }
    return latest, histories


def raw(uri: str, name: str) -> list[str]:
    """Every row of a table as the database returns it, its run's id left out: the types and
    the sign of a zero count too."""
    return sorted(repr(tuple(row)) for row in rows_of(uri, name))


@pytest.mark.parametrize("together", [False, True], ids=["a-write-each", "one-transaction"])
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_bulk_path_stores_exactly_what_log_batch_stores(
    kind: str, together: bool, empty_store: Path, tmp_path: Path
):
    """Each batch once through log_batch and once through the bulk path, a write each or all
    of them in one transaction (a hand-over of several key sets, held rows at a commit)."""
    with two_stores(kind, empty_store, tmp_path) as (plain_uri, bulk_uri):
        plain, plain_run = new_run(plain_uri, tmp_path)
        fast, fast_run = new_run(bulk_uri, tmp_path)
        bulk, line = for_client(fast)
        assert bulk is not None, line
        for batch, keep in batches():
            plain.log_batch(plain_run, metrics=as_metrics(batch, keep))
            if not together:
                bulk.write(fast_run, batch, keep)
        if together:
            handed = sum(b.values.size if k is None else int(k.sum()) for b, k in batches())
            assert bulk.write_all(fast_run, batches()) == handed
        for name in ("metrics", "latest_metrics"):
            assert table(bulk_uri, name) == table(plain_uri, name)
            assert raw(bulk_uri, name) == raw(plain_uri, name)
        assert len(table(bulk_uri, "latest_metrics")) == 4 + 600 + 1
        assert read_back(fast, fast_run) == read_back(plain, plain_run)
        latest, _ = read_back(fast, fast_run)
        assert latest["tie"] == "nan"  # NaN came first at (step 50, 7 ms): MLflow keeps it


def test_a_resumed_writer_skips_what_the_store_holds_on_either_path(
    empty_store: Path, tmp_path: Path
):
    """RunWriter's own rows (a cut-short commit resumed: the skip mask) both ways, equal."""
    found = []
    for name, bulk in (("log_batch", False), ("bulk", True)):
        uri = sqlite_store(empty_store, tmp_path, name)
        client = MlflowClient(tracking_uri=uri)
        spec = RunSpec(uri=uri, experiment_name="w", run_name=None, tags={},
                       artifact_root=str(tmp_path / "artifacts"))  # fmt: skip
        writer = RunWriter(client, spec, {})
        assert writer.bulk is for_client(client)[0] is not None
        if not bulk:
            writer.bulk = None
        writer.write_rows(rows(ODD_KEYS, [0, 1, 2], [[0, 1, 2, 3]] * 3))
        writer.skip = {"train/loss": 2, "weight/0 1": 1}
        writer.write_rows(rows(ODD_KEYS, [1, 2, 3], [[9, 9, 9, 9]] * 3, ms=[5, 5, 5]))
        writer.write_rows(rows(ODD_KEYS, [4], [[4, 4, 4, 4]]))
        assert writer.skip == {}
        found.append((table(uri, "metrics"), table(uri, "latest_metrics")))
    assert found[0] == found[1]
    assert sorted(s for key, _, _, s, _ in found[1][0] if key == "train/loss") == [0, 1, 2, 3, 4]
    assert sorted(s for key, _, _, s, _ in found[1][0] if key == "val/loss") == [
        0,
        1,
        1,
        2,
        2,
        3,
        4,
    ]


def test_a_store_of_another_schema_or_a_server_takes_log_batch(empty_store: Path, tmp_path: Path):
    database = Path(shutil.copy(empty_store, tmp_path / "older.db"))
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    assert check(client)[0] is not None
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'b0e9c8e0a2f1'")
        connection.commit()
    bulk, line = check(client)
    assert bulk is None
    assert "log_batch" in line and "b0e9c8e0a2f1" in line
    bulk, line = check(MlflowClient(tracking_uri="http://127.0.0.1:9"))
    assert bulk is None and "RestStore" in line


def test_an_active_model_takes_log_batch(empty_store: Path, tmp_path: Path):
    """log_batch links every value to MLflow's active model (read from the environment once a
    process, as a recorder inherits it): the bulk path would not, so it is not taken."""
    uri = sqlite_store(empty_store, tmp_path, "model")
    script = (
        "from mlflow.tracking import MlflowClient\n"
        "from trainlab.recorder.bulk_metrics import check\n"
        f"print(check(MlflowClient(tracking_uri={uri!r}))[1])\n"
    )
    env = {**os.environ, "MLFLOW_ACTIVE_MODEL_ID": "m-0123"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("(an active model is set: each value is linked to it)")


def test_mlflow_checks_hold_on_the_bulk_path(empty_store: Path, tmp_path: Path):
    client, run_id = new_run(sqlite_store(empty_store, tmp_path, "checks"), tmp_path)
    bulk = for_client(client)[0]
    assert isinstance(bulk, BulkMetrics)
    with pytest.raises(MlflowException, match="Invalid value"):
        bulk.write(run_id, rows(("bad\nkey",), [0], [[1.0]]))
    with pytest.raises(MlflowException, match="nonnegative"):
        bulk.write(run_id, rows(("loss",), [0], [[1.0]], ms=[-1]))
    client.delete_run(run_id)
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        bulk.write(run_id, rows(("loss",), [0], [[1.0]]))
    assert client.get_metric_history(run_id, "loss") == []


def test_the_job_log_says_which_path_the_rows_take(home: Path):
    result = run_cli("max_epochs=3", "print_every=0", *LEAN, home=home)
    assert result.returncode == 0, result.stderr
    (log,) = (home / "outputs").glob("*/*/*.log")
    (line,) = [line for line in log.read_text().splitlines() if "metric rows" in line]
    assert line.endswith("metric rows in bulk into the store's tables (schema dc11669786a5)")
