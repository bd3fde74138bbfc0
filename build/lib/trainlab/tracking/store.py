"""The MLflow store a run goes to, checked in milliseconds and without importing MLflow.

A store that cannot work fails with one line before any run exists: an unknown scheme, a server
that does not answer (MLflow would retry for minutes), a SQLite file in a folder that cannot be
written. A SQLite path given relative to the current folder is made absolute, as data paths are.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from trainlab.errors import ConfigError
from trainlab.paths import resolve_user_path, unwritable_reason

# Stores MLflow can open; anything else fails in MLflow with a long message about model registries.
STORE_SCHEMES = ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql", "databricks")
SQLITE = "sqlite:///"


def absolute_uri(uri: str) -> str:
    """`sqlite:///rel/x.db` (relative to the current folder) as `sqlite:////abs/rel/x.db`."""
    if uri.startswith(SQLITE) and ":memory:" not in uri:
        path = uri[len(SQLITE) :]
        if not path.startswith("/"):
            return f"{SQLITE}{resolve_user_path(path)}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` store, None for any other store."""
    if uri.startswith(SQLITE) and ":memory:" not in uri:
        return Path(uri[len(SQLITE) :].split("?", 1)[0])
    return None


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def check_server(uri: str) -> None:
    """Fail in seconds, with one line, when an http(s) tracking server does not answer."""
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
