"""What can be checked about the data before the rows are read and before torch is imported:
a CSV's file and header. The entry runs it with the config checks, within a second."""

from __future__ import annotations

import csv
from pathlib import Path

from trainlab.config.data import CsvDataConfig, DataConfig
from trainlab.errors import ConfigError
from trainlab.paths import resolve_user_path


def check_source(cfg: DataConfig) -> None:
    if isinstance(cfg, CsvDataConfig):
        csv_columns(cfg)


def csv_columns(cfg: CsvDataConfig) -> tuple[Path, list[str], list[str], list[str]]:
    """The CSV's path, header, feature and target columns, checked against the config."""
    path = resolve_user_path(cfg.path)
    if not path.is_file():
        raise ConfigError(f"data.path={cfg.path!r}: no such file ({path})")
    try:
        with path.open(newline="") as file:
            header = next(csv.reader(file, delimiter=cfg.delimiter), None)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"data.path={cfg.path!r}: not a readable CSV ({err})") from None
    if not header:
        raise ConfigError(f"data.path={cfg.path!r}: the CSV file is empty")
    columns = [c.strip() for c in header]
    targets = [cfg.target] if isinstance(cfg.target, str) else [str(t) for t in cfg.target]
    for name in targets:
        if name not in columns:
            raise ConfigError(
                f"data.target={name!r} is not a column of {path.name}; columns: {columns}"
            )
    features = (
        list(cfg.features) if cfg.features is not None else [c for c in columns if c not in targets]
    )
    for name in features:
        if name not in columns:
            raise ConfigError(
                f"data.features: {name!r} is not a column of {path.name}; columns: {columns}"
            )
    if not features:
        raise ConfigError(f"data.features: {path.name} has no column left besides the target(s)")
    return path, columns, features, targets
