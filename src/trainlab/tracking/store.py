"""The MLflow store a run goes to, checked in milliseconds and without importing MLflow.

A store that cannot work fails with one line before any run exists: an unknown scheme, a server
that does not answer (MLflow would retry for minutes), a server that refuses this user's
credentials (MLFLOW_TRACKING_USERNAME / _PASSWORD, sent as MLflow's client sends them), a SQLite
file in a folder that cannot be written. A SQLite path given relative to the current folder is made absolute, as data paths are.
"""

from __future__ import annotations

import base64
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
