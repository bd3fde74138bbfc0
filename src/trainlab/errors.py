"""The lowest layer: the one-line errors a person reads, and how any exception becomes one.

Every layer raises `ConfigError` (or a subclass) for what the user asked for that cannot work; the
entry points turn it, and any other exception, into `<prog>: error: <one line>` and exit status 2.
"""

from __future__ import annotations

import re
from typing import Any

from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A config value, input or environment that cannot work; the message is the line shown."""


def require(ok: bool, key: str, value: Any, expected: str) -> None:
    """Raise `key=value is not allowed: expected ...` unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: expected {expected}")


# Lines of OmegaConf's multi-line reports that repeat what the first line says.
_NOISE = re.compile(r"^\s*(full_key|reference_type|object_type|value|msg)\s*[:=]")
# What SQLAlchemy adds to a database error (MLflow's store errors carry it): the statement, its
# parameters (a whole batch of metrics), a link to its docs, a note on autoflush. The error
# itself is the line that remains.
_SQL_NOISE = re.compile(
    r"\n\[SQL: .*?(?=\n\[parameters: |\n\(Background on this error at: |\Z)"
    r"|\n\[parameters: .*?(?=\n\(Background on this error at: |\Z)"
    r"|\n?\(Background on this error at: [^)]*\)"
    r"|\(raised as a result of Query-invoked autoflush;[^)]*\)\n?",
    re.DOTALL,
)


class RecorderStopped(RuntimeError):
    """The process that records a run stopped (killed, crashed): what it made durable is in the
    store, and a new recorder may continue the run (tracking/run.py, engines/lightning.py)."""


def is_user_error(err: BaseException) -> bool:
    """Errors in what the user asked for (config, overrides, data), as opposed to bugs."""
    return isinstance(err, ConfigError | HydraException | OmegaConfBaseException)


def one_line(err: BaseException) -> str:
    """The error and its causes, whitespace collapsed into a single line; a cause whose text
    the line already holds (a wrapper that quotes it: Hydra's "Error in call to target",
    SQLAlchemy's "(sqlite3.OperationalError) ...") is not said twice."""
    if isinstance(err, MissingConfigException) and err.options is not None:
        return _missing_option(err)
    parts: list[str] = []
    current: BaseException | None = err
    while current is not None and len(parts) < 5:
        text = _describe(current)
        if text and not any(text in part for part in parts):
            parts.append(text)
        current = current.__cause__
    return "; ".join(parts) or type(err).__name__


def _missing_option(err: MissingConfigException) -> str:
    options = sorted(err.options or [])
    group, _, option = (err.missing_cfg_file or "").rpartition("/")
    return f"{group}={option}: no such option; expected one of {', '.join(options)}"


def _describe(err: BaseException) -> str:
    lines = [line.strip() for line in _SQL_NOISE.sub("", str(err)).splitlines()]
    text = " ".join(line for line in lines if line and not _NOISE.match(line))
    key = getattr(err, "full_key", None) if isinstance(err, OmegaConfBaseException) else None
    if key and key not in text:
        text = f"{key}: {text}"
    return text
