"""The recorder's metric rows written at the store's floor: one SQLAlchemy Core insert per batch
into MLflow's own `metrics` table and one upsert of `latest_metrics`, at a fraction of what
`log_batch` costs. Both are compiled once per store for its dialect and run by the driver's
`executemany` on whole columns (`Compiled`); a hand-over of several key sets, or held rows at
a commit, go in one transaction (`write_all`).

Why: MLflow's SQL store's `log_batch` builds, validates and flushes one ORM `SqlMetric` object
per value, at any batch size, and a tracked MLP step records 8 values: where training keeps every
core busy, that CPU per value is what a tracked epoch costs beyond an untracked one. The same rows
as one Core executemany (as MLflow itself writes tables in bulk, its `_upsert_batch`) cost a
fraction of that, most of it SQLite's own (bench rows V1 and V1-log_batch, docs/performance.md).

What it writes is what `log_batch` writes (tests/test_bulk_metrics.py compares both, row for
row, on SQLite and PostgreSQL):
- MLflow's checks: its own `_validate_metric` once per key (the name); per batch, vectorised,
  what it checks per value (timestamps >= 0; integer steps and timestamps: the `Rows` dtypes);
  the run exists and is active;
- NaN stored as 0 with `is_nan`, +/-inf as +/- the largest double (`sanitize_metric_value`);
- a row the table already holds (key, timestamp, step, value, is_nan) is not written again
  (MLflow catches the IntegrityError and writes the rest; here: ON CONFLICT DO NOTHING);
- `latest_metrics` keeps per key the row with the highest (step, timestamp, value), the first
  of equals winning (`_update_latest_metrics_if_necessary`), as one upsert whose update applies
  only to a strictly higher row.

Guarded, once per store (`for_client`): only MLflow's own `SqlAlchemyStore` on SQLite or
PostgreSQL whose schema revision (alembic's, read from the database) is `SCHEMA_REVISION`, the
one the pinned MLflow creates, which must also be the installed MLflow's head; and no active
model (`log_batch` would link every value to it). Anything else (an older or newer store or
MLflow, a REST server, `tracking=server`) takes `log_batch`. An MLflow upgrade that changes the
tables changes the head: runs take `log_batch` and the equivalence test fails until this module
is checked against the new tables and `SCHEMA_REVISION` follows.

This is the one module that uses MLflow's internals (its SQL models, its store's engine and
session maker, `_validate_metric`, its head revision), as issue 26 allowed; nothing else in
trainlab may.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic.migration import MigrationContext
from mlflow.entities import LifecycleStage, Metric
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST
from mlflow.store.db.utils import _get_latest_schema_revision
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient
from mlflow.tracking.fluent import get_active_model_id
from mlflow.utils.validation import _validate_metric
from sqlalchemy.dialects import postgresql, sqlite

from trainlab.tracking.messages import Rows

SCHEMA_REVISION = "dc11669786a5"  # the head of MLflow 3.17.2's migrations
INSERTS: dict[str, Callable[..., Any]] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
LARGEST = np.finfo(np.float64).max  # what MLflow stores for +inf (and its negative for -inf)
METRICS, LATEST, RUNS = SqlMetric.__table__, SqlLatestMetric.__table__, SqlRun.__table__


class BulkMetrics:
    """Writes `Rows` into one SQL store's `metrics` and `latest_metrics` tables."""

    def __init__(self, store: SqlAlchemyStore, insert: Callable[..., Any]) -> None:
        self.store = store
        self.checked: set[str] = set()  # keys whose name MLflow has accepted
        dialect = store.engine.dialect
        self.add_rows = Compiled(insert(METRICS).on_conflict_do_nothing(), METRICS.c, dialect)
        stage = sa.select(RUNS.c.lifecycle_stage).where(RUNS.c.run_uuid == sa.bindparam("run_uuid"))
        self.stage = Compiled(stage, RUNS.c, dialect)
        upsert = insert(LATEST)
        new = upsert.excluded
        higher = sa.tuple_(new.step, new.timestamp, new.value) > sa.tuple_(
            LATEST.c.step, LATEST.c.timestamp, LATEST.c.value
        )
        keep_latest = upsert.on_conflict_do_update(
            index_elements=[LATEST.c.key, LATEST.c.run_uuid],
            set_={name: new[name] for name in ("value", "timestamp", "step", "is_nan")},
            where=higher,
        )
        self.keep_latest = Compiled(keep_latest, LATEST.c, dialect)

    def write(self, run_id: str, rows: Rows, keep: np.ndarray | None = None) -> int:
        """Write `rows` (only where `keep`, rows x keys, is True); returns how many values."""
        return self.write_all(run_id, [(rows, keep)])

    def write_all(self, run_id: str, batch: Sequence[tuple[Rows, np.ndarray | None]]) -> int:
        """Write each `(rows, keep)` of `batch` in order, in one transaction (as `write` each
        in turn would); returns how many values."""
        metrics: dict[str, list[Any]] = defaultdict(list)
        latest: dict[str, list[Any]] = defaultdict(list)
        for rows, keep in batch:
            found = self.columns(run_id, rows, keep)
            for table, part in zip((metrics, latest), found, strict=True):
                for name, column in part.items():
                    table[name].extend(column)
        if not metrics["key"]:
            return 0
        with self.store.ManagedSessionMaker(read_only=False) as session:
            connection = session.connection()
            stage = self.stage.execute(connection, {"run_uuid": [run_id]}).scalar_one_or_none()
            active(stage, run_id)
            self.add_rows.execute(connection, metrics)
            self.keep_latest.execute(connection, latest)
        return len(metrics["key"])

    def columns(
        self, run_id: str, rows: Rows, keep: np.ndarray | None
    ) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        """MLflow's checks of `rows`; what they add to `metrics` and to `latest_metrics`."""
        keys = list(rows.keys)
        for key in keys:
            if key not in self.checked:
                _validate_metric(key, 0.0, 0, 0)
                self.checked.add(key)
        steps, times = integers(rows.steps, "step"), integers(rows.times, "timestamp")
        values = np.asarray(rows.values, dtype=np.float64).reshape(len(steps), len(keys))
        if keep is None:
            keep = np.ones(values.shape, dtype=bool)
        # Row-major, as log_batch receives them: step by step, key by key.
        at_row, at_key = np.nonzero(keep)
        if not len(at_row):
            return {}, {}
        if times[at_row].min() < 0:  # MLflow's own words for the first one
            first = int(np.argmax(times[at_row] < 0))
            i, j = int(at_row[first]), int(at_key[first])
            _validate_metric(keys[j], float(values[i, j]), int(times[i]), int(steps[i]))
        is_nan = np.isnan(values)
        stored = np.clip(np.where(is_nan, 0.0, values), -LARGEST, LARGEST)
        key_of = np.array(keys, dtype=object)[at_key].tolist()
        metrics = {
            "key": key_of,
            "value": stored[at_row, at_key].tolist(),
            "timestamp": times[at_row].tolist(),
            "step": steps[at_row].tolist(),
            "is_nan": is_nan[at_row, at_key].tolist(),
            "run_uuid": [run_id] * len(key_of),
        }
        return metrics, latest_rows(run_id, keys, steps, times, stored, is_nan, keep)


class Compiled:
    """A Core statement on MLflow's tables, compiled once for the store's dialect and run by the
    driver on whole columns: Core's `execute` of a list of rows builds and converts each row's
    parameters in Python, most of this path's CPU beyond the database's own. Each column goes
    through the bind processor of its type in MLflow's table, as Core's `execute` would."""

    def __init__(self, statement: Any, columns: sa.ColumnCollection, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(columns.keys()))
        self.sql: str = compiled.string
        self.order: list[str] = list(compiled.positiontup or compiled.binds)
        self.named = not dialect.positional
        self.convert: dict[str, Callable[[Any], Any]] = {}
        for name in self.order:
            convert = columns[name].type.bind_processor(dialect)
            if convert is not None and isinstance(columns[name].type, sa.Boolean):
                convert = {flag: convert(flag) for flag in (False, True)}.__getitem__
            if convert is not None:
                self.convert[name] = convert

    def execute(self, connection: sa.Connection, columns: dict[str, list[Any]]) -> Any:
        """Run it once per row of `columns` (a list of values per bind name, all as long)."""
        for name, convert in self.convert.items():
            columns[name] = list(map(convert, columns[name]))
        rows = list(zip(*(columns[name] for name in self.order), strict=True))
        if self.named:
            return connection.exec_driver_sql(
                self.sql, [dict(zip(self.order, row, strict=True)) for row in rows]
            )
        return connection.exec_driver_sql(self.sql, rows)


def as_metrics(rows: Rows, keep: np.ndarray | None) -> list[Metric]:
    """The rows as MLflow's entities, for `log_batch` (MLflow splits them into requests)."""
    return [
        Metric(key, float(value), int(ms), int(step))
        for i, (step, ms, values) in enumerate(
            zip(rows.steps, rows.times, rows.values, strict=True)
        )
        for j, (key, value) in enumerate(zip(rows.keys, values, strict=True))
        if keep is None or keep[i, j]
    ]


def integers(array: np.ndarray, what: str) -> np.ndarray:
    """Steps or timestamps as int64 (what `int()` makes of each in the log_batch path)."""
    found = np.asarray(array)
    if found.dtype.kind in "iu":
        return found.astype(np.int64, copy=False)
    if not np.isfinite(found).all():
        raise ValueError(f"cannot convert a {what} of {found[~np.isfinite(found)][0]} to integer")
    return found.astype(np.int64)


def latest_rows(
    run_id: str,
    keys: list[str],
    steps: np.ndarray,
    times: np.ndarray,
    stored: np.ndarray,
    is_nan: np.ndarray,
    keep: np.ndarray,
) -> dict[str, list[Any]]:
    """Per key written, its latest row of this batch (as columns): the highest (step, timestamp),
    then the highest value, the first of equals (MLflow compares the stored values: NaN as 0)."""
    order = np.lexsort((times, steps))
    new_pair = np.ones(len(order), dtype=bool)
    new_pair[1:] = (np.diff(steps[order]) != 0) | (np.diff(times[order]) != 0)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.cumsum(new_pair)  # equal (step, timestamp) rows share a rank, from 1
    ranks = np.where(keep, rank[:, None], 0)
    top = ranks == ranks.max(axis=0)
    best = np.where(top & keep, stored, -np.inf).max(axis=0)
    first = np.argmax(top & keep & (stored == best), axis=0)  # the first of equals
    written = keep.any(axis=0)
    at_key = np.flatnonzero(written)
    at_row = first[at_key]
    return {
        "key": np.array(keys, dtype=object)[at_key].tolist(),
        "value": stored[at_row, at_key].tolist(),
        "timestamp": times[at_row].tolist(),
        "step": steps[at_row].tolist(),
        "is_nan": is_nan[at_row, at_key].tolist(),
        "run_uuid": [run_id] * len(at_key),
    }


def active(stage: str | None, run_id: str) -> None:
    """MLflow's refusal of a run that does not exist or is deleted, in its own words."""
    if stage is None:
        raise MlflowException(f"Run with id={run_id} not found", RESOURCE_DOES_NOT_EXIST)
    if stage != LifecycleStage.ACTIVE:
        raise MlflowException(
            f"The run {run_id} must be in the 'active' state. Current state is {stage}.",
            INVALID_PARAMETER_VALUE,
        )


_opened: weakref.WeakKeyDictionary[MlflowClient, tuple[BulkMetrics | None, str]] = (
    weakref.WeakKeyDictionary()
)


def for_client(client: MlflowClient) -> tuple[BulkMetrics | None, str]:
    """The bulk writer of this client's store, or None; and the line that says which path the
    metric rows take. Checked once per client (the recorder keeps one per store)."""
    if client not in _opened:
        _opened[client] = check(client)
    return _opened[client]


def check(client: MlflowClient) -> tuple[BulkMetrics | None, str]:
    store = client._tracking_client.store
    refused = "metric rows through MlflowClient.log_batch"
    if type(store) is not SqlAlchemyStore:
        return None, f"{refused} (the store is a {type(store).__name__})"
    insert = INSERTS.get(store.engine.dialect.name)
    if insert is None:
        return None, f"{refused} (a {store.engine.dialect.name} database)"
    if get_active_model_id() is not None:
        return None, f"{refused} (an active model is set: each value is linked to it)"
    try:
        with store.engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
        head = _get_latest_schema_revision()
    except Exception as err:  # the store's own calls will say what is wrong, if anything
        return None, f"{refused} (its schema revision could not be read: {type(err).__name__})"
    if revision != SCHEMA_REVISION or head != SCHEMA_REVISION:
        return None, (
            f"{refused} (schema {revision}, MLflow's {head}; the bulk path knows {SCHEMA_REVISION})"
        )
    line = f"metric rows in bulk into the store's tables (schema {revision})"
    return BulkMetrics(store, insert), line
