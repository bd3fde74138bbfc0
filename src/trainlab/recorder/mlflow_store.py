"""Opening an MLflow store safely, in the processes that import MLflow (the recorder, `make ui`,
`trainlab-predict`, `trainlab-store`): a SQLite store is created, checked and repaired under its
cross-process lock (see tracking/store_checks.py for why), and a store MLflow refuses is one line that
says how to repair it, never a traceback.

MLflow's SQLite sessions already wait 20 s for another writer (`PRAGMA busy_timeout`), so after
creation any number of processes write side by side.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from filelock import Timeout
from mlflow.tracking import MlflowClient

from trainlab.errors import ConfigError, one_line
from trainlab.tracking.store_checks import (
    BUSY_SECONDS,
    LOCK_SECONDS,
    TMP_PREFIX,
    StoreError,
    repair_hint,
    sqlite_path,
    sqlite_problem,
    store_lock,
)

OUT_OF_DATE = "out-of-date database schema"  # in MLflow's own error for an older store
# SQLite's words for a database file it can no longer write: read-only (also what it says of a
# file removed under an open connection), gone, or another file in its place.
STORE_GONE = (
    "readonly database",
    "unable to open database file",
    "disk I/O error",
    "no such table",
)


def open_client(uri: str) -> MlflowClient:
    """A client on `uri` whose store exists and has MLflow's current schema.

    A SQLite store is opened the first time under its lock (MlflowClient opens its store when it
    is made): MLflow creates the tables when the file has none and checks the schema version
    otherwise."""
    database = sqlite_path(uri)
    if database is None:
        return MlflowClient(tracking_uri=uri)
    try:
        with store_lock(database):
            return checked_client(uri, database)
    except Timeout:
        raise StoreError(
            f"the store {database}: another process has held {database}.lock for "
            f"{LOCK_SECONDS} s; if none is creating the store, delete the lock file"
        ) from None
    except OSError:  # a read-only folder or file system: nothing can be created there anyway
        return checked_client(uri, database)


def checked_client(uri: str, database: Path) -> MlflowClient:
    problem = sqlite_problem(database)  # also for a store MLflow has cached in this process
    if problem is not None:
        raise StoreError(
            f"the store {database} cannot be used: {problem}; {repair_hint(uri, database)}"
        )
    try:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as err:
        raise StoreError(store_message(uri, database, err)) from None
    return client


def store_message(uri: str, database: Path, err: BaseException) -> str:
    """What is wrong with a store MLflow could not open, and how to repair it."""
    problem = sqlite_problem(database)
    if problem is None and OUT_OF_DATE in str(err):
        versions = re.search(r"found version [^)]*", str(err))
        problem = "its MLflow schema is older than this MLflow's" + (
            f" ({versions.group(0)})" if versions else ""
        )
    if problem is None:
        problem = f"MLflow cannot open it ({one_line(err)[:300]})"
    return f"the store {database} cannot be used: {problem}; {repair_hint(uri, database)}"


def repair(uri: str) -> str:
    """Back the store up, drop what an interrupted migration left, and bring the schema to this
    MLflow's version with MLflow's own `mlflow db upgrade`; returns what was done."""
    database = sqlite_path(uri)
    if database is None or not database.is_file():
        raise StoreError(f"--store {uri}: not an existing SQLite store (sqlite:////<path>.db)")
    with store_lock(database):
        backup = database.with_name(f"{database.name}.backup-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(database, backup)
        dropped = drop_leftovers(database)
        upgrade = subprocess.run(
            [str(Path(sys.executable).with_name("mlflow")), "db", "upgrade", uri],
            capture_output=True,
            text=True,
        )
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception as err:
            detail = upgrade.stderr.strip().splitlines()[-1:] or [one_line(err)]
            raise StoreError(
                f"the store {database} could not be repaired ({detail[0][:300]}); the backup "
                f"is {backup}; move {database.name} aside to start a new store"
            ) from None
    done = f"dropped {', '.join(dropped)}; " if dropped else ""
    return f"repaired {database}: {done}schema upgraded to this MLflow's; backup {backup}"


def drop_leftovers(database: Path) -> list[str]:
    """Drop the `_alembic_tmp_<table>` copies a cut-short migration left beside `<table>`; one
    whose table is gone holds the only copy of its rows and is refused."""
    with closing(sqlite3.connect(database, timeout=BUSY_SECONDS)) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        leftovers = sorted(t for t in tables if t.startswith(TMP_PREFIX))
        orphans = [t for t in leftovers if t[len(TMP_PREFIX) :] not in tables]
        if orphans:
            raise StoreError(
                f"the store {database}: {', '.join(orphans)} hold rows whose table is gone; "
                "repair it by hand (ALTER TABLE ... RENAME) or move the file aside"
            )
        for table in leftovers:
            con.execute(f'DROP TABLE "{table}"')
        con.commit()
    return leftovers


def store_problem(err: BaseException, uri: str) -> str | None:
    """A write that failed because of where the run is kept, said plainly: a full disk, a store
    that is read-only, removed or replaced, an artifact folder that cannot be written; None for
    any other failure. SQLite's messages are its own, stable ones (sqlite3.OperationalError)."""
    # SQLAlchemy's "(sqlite3.OperationalError) database or disk is full", said as Python would.
    text = re.sub(r"^\(([\w.]+)\) ", r"\1: ", one_line(err))
    database = sqlite_path(uri)
    if database is not None and "database or disk is full" in text:
        return f"the disk of {database} is full ({text}); expected free space there"
    if database is not None and any(sign in text for sign in STORE_GONE):
        if not database.is_file():
            return f"{database} was removed while the run was recorded ({text})"
        return f"{database} cannot be written ({text}); expected a writable store"
    outage = outage_of(text, uri)
    if outage is not None:
        return outage
    os_error = next((e for e in causes(err) if isinstance(e, OSError) and e.filename), None)
    if os_error is not None:  # the file is often MLflow's own temporary one: name its folder
        return (
            f"cannot write in {Path(os_error.filename).parent} ({os_error.strerror}); expected "
            "a writable artifact folder with free space"
        )
    return None


SERVER_DOWN = "does not answer"  # in the line of a tracking server that is down


def outage_of(text: str, uri: str) -> str | None:
    """A tracking server that does not answer, or the object store behind it (its artifact
    proxy answers 5xx), said as the part that failed; MLflow's retries are bounded by the
    recorder (recorder/server.py), so this comes within a minute."""
    if not uri.startswith(("http://", "https://")):
        return None
    artifact = re.search(r"/mlflow-artifacts/artifacts/\S*?/artifacts/(\S+?)(?: |$)", text)
    if artifact is not None and re.search(r"too many 5\d\d error responses|5\d\d", text):
        return (
            f"the object store behind the tracking server {uri} did not take "
            f"{artifact.group(1)} (the server's artifact proxy answered with errors); expected "
            "the object store (S3, SeaweedFS) to be up"
        )
    if re.search(
        r"Connection refused|Max retries exceeded|Read timed out|RemoteDisconnected", text
    ):
        return f"the tracking server {uri} {SERVER_DOWN} ({text[:160]}); expected it up"
    return None


def causes(err: BaseException) -> list[BaseException]:
    """The error and what caused it, explicitly or while it was handled."""
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


class RunRefused(ConfigError):
    """What the user asked of the store cannot be done (a broken store, a run still RUNNING)."""


def refusal(err: Exception, experiment_name: str) -> str | None:
    """A team server's "no" to this user, said plainly (the credentials come from the
    environment, which this process inherited from the trainer)."""
    if getattr(err, "error_code", None) != "PERMISSION_DENIED":
        return None
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "(no MLFLOW_TRACKING_USERNAME)")
    return (
        f"user {user!r} may not create runs in experiment {experiment_name!r} "
        "(PERMISSION_DENIED); expected EDIT on it: ask the server's admin (make team-user)"
    )
