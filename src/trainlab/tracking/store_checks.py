"""The MLflow store a run goes to, checked in milliseconds and without importing MLflow.

A store that cannot work fails with one line before any run exists: an unknown scheme, a server
that does not answer (MLflow would retry for minutes), a server that refuses this user's
credentials (MLFLOW_TRACKING_USERNAME / _PASSWORD, sent as MLflow's client sends them), a SQLite
file in a folder that cannot be written, a SQLite store left half-migrated. A SQLite path given
relative to the current folder is made absolute, as data paths are.

Why a lock: MLflow creates a new SQLite store's tables with a chain of alembic migrations, and
processes that do it at the same moment fail and leave the file half-migrated. Whoever creates,
upgrades or repairs an embedded store holds `<store>.lock` (recorder/mlflow_store.py); a store
that looks unfinished is judged only under that lock, so a store another process is creating
right now is waited for, not reported.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path

from filelock import FileLock, Timeout

from trainlab.errors import ConfigError
from trainlab.paths import absolute_sqlite_uri, unwritable_reason

# Stores MLflow can open; anything else fails in MLflow with a long message about model registries.
STORE_SCHEMES = ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql", "databricks")
SQLITE = "sqlite:///"


LOCK_SECONDS = 600  # far longer than creating a store takes; a holder stuck past it is reported
BUSY_SECONDS = 30.0  # SQLite's wait for another writer (MLflow's own sessions wait 20 s)
TMP_PREFIX = "_alembic_tmp_"  # what alembic's SQLite migrations leave when they are cut short


class StoreError(ConfigError):
    """A store that exists but cannot be used as it is; the message says how to repair it."""


def absolute_uri(uri: str) -> str:
    """`sqlite:///rel/x.db` (relative to the current folder) as `sqlite:////abs/rel/x.db`."""
    return absolute_sqlite_uri(uri)


def store_lock(database: Path) -> FileLock:
    """The lock held while a SQLite store is created, upgraded or repaired (beside the file, so
    that processes on every machine that shares the folder see it)."""
    return FileLock(str(database) + ".lock", timeout=LOCK_SECONDS)


def sqlite_problem(database: Path) -> str | None:
    """What is wrong with an existing SQLite store, read with the standard library (no MLflow):
    None for a missing or empty file (MLflow creates it) and for a store that looks complete."""
    if not database.is_file() or database.stat().st_size == 0:
        return None
    try:
        with closing(
            sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=BUSY_SECONDS)
        ) as con:
            tables = {
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            versions = (
                con.execute("SELECT version_num FROM alembic_version").fetchall()
                if "alembic_version" in tables
                else []
            )
    except sqlite3.DatabaseError as err:
        return f"it is not a readable SQLite database ({err})"
    leftovers = sorted(t for t in tables if t.startswith(TMP_PREFIX))
    if leftovers:
        return (
            f"it is half-migrated: {', '.join(leftovers)} left by an MLflow schema migration "
            "that was cut short"
        )
    if tables and not versions:
        if "experiments" not in tables:
            return "it is not an MLflow store (no experiments table)"
        return "it is half-created: MLflow's tables exist but no schema version was recorded"
    return None


def repair_hint(uri: str, database: Path) -> str:
    return (
        f"repair it with `trainlab-store repair --store {uri}` (it keeps a backup), or move "
        f"{database.name} aside to start a new, empty store"
    )


def check_sqlite_store(uri: str, database: Path) -> None:
    """One line for a half-migrated store; a store that looks unfinished is judged again under
    the store's lock, since the process that holds it may be creating it right now."""
    if sqlite_problem(database) is None:
        return
    try:
        with store_lock(database):
            problem = sqlite_problem(database)
    except Timeout:
        problem = f"another process has held {database}.lock for {LOCK_SECONDS} s"
    if problem is not None:
        raise StoreError(
            f"the store {database} cannot be used: {problem}; {repair_hint(uri, database)}"
        )


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` store, None for any other store."""
    if uri.startswith(SQLITE) and ":memory:" not in uri:
        return Path(uri[len(SQLITE) :].split("?", 1)[0])
    return None


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def check_server(uri: str) -> None:
    """Fail in seconds, with one line, when an http(s) tracking server does not answer or does
    not let this user in."""
    if not is_server(uri):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5):
            pass
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(
            f"tracking.uri={uri!r}: no MLflow server answers ({reason}); start one "
            "(make ui / make server) or drop tracking.uri to use the embedded store"
        ) from None
    check_login(uri)


def credentials() -> dict[str, str]:
    """The Authorization header MLflow's client would send (basic auth, or a bearer token)."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def check_login(uri: str) -> None:
    """/health answers everyone; an API call tells whether this user may come in."""
    probe = urllib.request.Request(
        f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1",
        headers=credentials(),
    )
    try:
        with urllib.request.urlopen(probe, timeout=10):
            return
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(
            f"tracking.uri={uri!r}: the server stopped answering ({reason})"
        ) from None
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if status == 401 and not credentials():
        raise ConfigError(
            f"tracking.uri={uri!r}: the server requires a login (HTTP 401); expected "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment"
        )
    if status == 401:
        who = f"user {user!r}" if user else "the token in MLFLOW_TRACKING_TOKEN"
        raise ConfigError(
            f"tracking.uri={uri!r}: the server refused {who} (HTTP 401); expected a valid "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    if status == 403:
        raise ConfigError(
            f"tracking.uri={uri!r}: user {user!r} may not read experiments there (HTTP 403); "
            "ask the server's admin for a permission (make team-user)"
        )
    # Any other answer (an old server, a proxy) is left to MLflow's own requests to report.


def check_store(uri: str) -> None:
    """One line for a store that cannot work; returns quietly for one that can."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0] if ":" in uri else ""
    if scheme not in STORE_SCHEMES:
        raise ConfigError(
            f"tracking.uri={uri!r}: not a store MLflow can open; expected sqlite:///<abs path>, "
            "http(s)://host:port or another of " + ", ".join(STORE_SCHEMES)
        )
    check_server(uri)
    database = sqlite_path(uri)
    if database is not None:
        reason = unwritable_reason(database.parent)
        if reason is None and database.exists() and not os.access(database, os.W_OK):
            reason = "the file is read-only"
        if reason is not None:
            raise ConfigError(
                f"tracking.uri={uri!r}: cannot write the store {database} ({reason}); expected "
                "a writable folder (set TRAINLAB_HOME, or tracking.uri=sqlite:////<path>/mlflow.db)"
            )
        check_sqlite_store(uri, database)


# MLflow 3's dashboard opens on its GenAI view; this query opens its model-training view.
MODEL_TRAINING_VIEW = "?workflowType=machine_learning"
LOCAL_DASHBOARD = "http://127.0.0.1:5000"  # `make ui`


def dashboard_line(uri: str, experiment_id: str, run_id: str) -> str:
    """Where a person sees the run: its tracking server, or `make ui` for the embedded store."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}{MODEL_TRAINING_VIEW}"
    if is_server(uri):  # a tracking server is its own dashboard
        return f"Dashboard: {uri.rstrip('/')}/{page}"
    return f"Dashboard: `make ui`, then open {LOCAL_DASHBOARD}/{page}"
