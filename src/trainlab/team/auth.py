"""The team server's authentication: MLflow's own basic-auth app, configured without defaults.

MLflow keeps users and their per-experiment permissions (READ, USE, EDIT, MANAGE, DENY) in its auth
database, here the same PostgreSQL database as the runs (its tables and its own alembic version
table sit beside the tracking tables). The admin user is created on the first start from a
password that must come from the environment (`MLFLOW_AUTH_ADMIN_PASSWORD`) or a file
(`TRAINLAB_ADMIN_PASSWORD_FILE`, else <TRAINLAB_HOME>/team/admin-password when `make team` made
one there): there is no built-in one, and the server refuses to start
without it. Clients authenticate with `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`.

Secrets travel only through the environment of the processes that need them and through files
of mode 600; they are never put on a command line (visible to every user in `ps`) or printed.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from trainlab import paths

ADMIN_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"  # MLflow's own variable
ADMIN_FILE_ENV = "TRAINLAB_ADMIN_PASSWORD_FILE"
ADMIN_USER_ENV = "TRAINLAB_ADMIN_USER"
DEFAULT_ADMIN_USER = "admin"
MIN_PASSWORD = 12  # MLflow refuses shorter passwords
# What MLflow's server grants on an experiment: exactly its RESOURCE_GRANTABLE_PERMISSIONS (a
# test compares them; importing MLflow's server here would cost seconds at every --help). DENY
# refuses even where the default would allow; NO_PERMISSIONS is no grant (the server refuses it).
PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "DENY")
# What a signed-in user may do where nobody granted anything: READ (read every experiment), or
# NO_PERMISSIONS (see only the experiments granted to them: `--default-permission
# NO_PERMISSIONS`, or TRAINLAB_DEFAULT_PERMISSION for `make team`). Creating runs in an
# experiment takes a grant (EDIT) or the admin.
DEFAULT_PERMISSION = "READ"
DEFAULT_PERMISSIONS = ("READ", "NO_PERMISSIONS")
DEFAULT_PERMISSION_ENV = "TRAINLAB_DEFAULT_PERMISSION"
AUTH_CACHE_SECONDS = 60


class AuthSetupError(RuntimeError):
    """A missing or unusable secret; the message is one line and never holds the secret."""


def admin_user() -> str:
    return os.environ.get(ADMIN_USER_ENV) or DEFAULT_ADMIN_USER


def read_secret_file(path: Path, what: str) -> str:
    """The first line of a secret file, which must be readable by its owner only."""
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as err:
        raise AuthSetupError(f"{what} file {path}: cannot read it ({err.strerror})") from None
    if mode & 0o077:
        raise AuthSetupError(
            f"{what} file {path} can be read by other users (mode {mode & 0o777:o}); "
            f"expected mode 600: chmod 600 {path}"
        )
    if not text:
        raise AuthSetupError(f"{what} file {path} is empty")
    return text.splitlines()[0]


def default_admin_file() -> Path:
    """Where `make team` keeps the admin password it generates when none is given."""
    return paths.home() / "team" / "admin-password"


def admin_password() -> str:
    """The admin password: MLFLOW_AUTH_ADMIN_PASSWORD, TRAINLAB_ADMIN_PASSWORD_FILE, or the file
    `make team` generated."""
    password = os.environ.get(ADMIN_ENV)
    if not password and os.environ.get(ADMIN_FILE_ENV):
        password = read_secret_file(Path(os.environ[ADMIN_FILE_ENV]), ADMIN_FILE_ENV)
    if not password and default_admin_file().exists():
        password = read_secret_file(default_admin_file(), "the admin password")
    if not password:
        raise AuthSetupError(
            f"no admin password: set {ADMIN_ENV} or {ADMIN_FILE_ENV}=<a file of mode 600>; "
            "there is no default"
        )
    if len(password) < MIN_PASSWORD:
        raise AuthSetupError(f"the admin password is shorter than {MIN_PASSWORD} characters")
    return password


def write_secret_file(path: Path, text: str) -> None:
    """Write a file that only its owner can read (created with mode 600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)


def new_password() -> str:
    return secrets.token_urlsafe(24)


def default_permission(chosen: str | None = None) -> str:
    """The server's default permission: the one chosen, else TRAINLAB_DEFAULT_PERMISSION, else
    READ; anything else is one line."""
    value = chosen or os.environ.get(DEFAULT_PERMISSION_ENV) or DEFAULT_PERMISSION
    if value not in DEFAULT_PERMISSIONS:
        raise AuthSetupError(
            f"default permission {value!r} is not one of {', '.join(DEFAULT_PERMISSIONS)} "
            "(NO_PERMISSIONS: a user sees only the experiments granted to them)"
        )
    return value


def auth_config(state_dir: Path, database_uri: str, default: str = DEFAULT_PERMISSION) -> Path:
    """MLflow's auth config file for this server (mode 600: it holds the database URI)."""
    path = state_dir / "basic_auth.ini"
    write_secret_file(
        path,
        "[mlflow]\n"
        f"default_permission = {default}\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {admin_user()}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Each request's password check is a PBKDF2 hash, slow by design, on every request (a
        # tracked run makes many). A worker remembers a checked password for a minute; a
        # changed or deleted password reaches the other workers within that minute.
        f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n",
    )
    return path


def server_environment(
    state_dir: Path, database_uri: str, default: str = DEFAULT_PERMISSION
) -> dict[str, str]:
    """What the `mlflow server --app-name basic-auth` process needs in its environment."""
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config(state_dir, database_uri, default)),
        ADMIN_ENV: admin_password(),
        # The sign-up form's CSRF key; shared by the workers, which inherit it.
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
    }
