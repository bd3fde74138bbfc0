"""What can be checked about the data before the rows are read and before torch is imported:
a file's existence and header (a CSV's first line, a Parquet file's schema), and whether the
target suits the task (numbers for a regression loss, class labels for a classification loss)
where the source alone decides it. The entry runs it with the config checks, within a second."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from trainlab.config.data import (
    BreastCancerDataConfig,
    CsvDataConfig,
    DataConfig,
    DiabetesDataConfig,
    FileDataConfig,
    IrisDataConfig,
    SeedDataConfig,
    SyntheticDataConfig,
    WineDataConfig,
)
from trainlab.data.arrays import check_task
from trainlab.errors import ConfigError
from trainlab.paths import resolve_user_path

PARQUET_MAGIC = b"PAR1"  # the first (and last) four bytes of every Parquet file
OTHER_DELIMITERS = (";", "\t", "|", ",")
REGRESSION_LOSSES = "a regression loss (loss=mse, l1, huber or smooth_l1)"
CLASSIFICATION_LOSSES = "a classification loss (loss=cross_entropy or loss=bce_with_logits)"


@dataclass(frozen=True)
class FileColumns:
    """A data file's path and columns, checked against the config."""

    path: Path
    header: list[str]  # every column of the file, in order (a CSV's names stripped)
    features: list[str]
    targets: list[str]


def check_source(cfg: DataConfig, task: str | None = None) -> None:
    """The file and its header; with `task` ("regression" or "classification", from the loss),
    whether the target can be learnt that way."""
    if isinstance(cfg, FileDataConfig):
        columns = file_columns(cfg)
        if task == "classification" and len(columns.targets) != 1:
            raise ConfigError(
                f"data.target={columns.targets}: a classification loss learns one label column; "
                "expected one column name"
            )
    if task is not None:
        check_task(task)
        check_target_kind(cfg, task)


def check_target_kind(cfg: DataConfig, task: str) -> None:
    """Built-in sets whose target is always numbers, or always labels, against the task."""
    labelled = isinstance(cfg, IrisDataConfig | WineDataConfig | BreastCancerDataConfig)
    numeric = isinstance(cfg, SeedDataConfig | DiabetesDataConfig)
    if isinstance(cfg, SyntheticDataConfig):
        labelled, numeric = cfg.n_classes is not None, cfg.n_classes is None
    if task == "classification" and numeric:
        if isinstance(cfg, SyntheticDataConfig):
            expected = f"data.n_classes=K (K >= 2) or {REGRESSION_LOSSES}"
        else:
            expected = (
                f"{REGRESSION_LOSSES} or labelled data (data=iris, wine, breast_cancer, or a "
                "label column of a csv or parquet file)"
            )
        raise ConfigError(
            f"data={cfg.name} has a numeric target and a classification loss needs class "
            f"labels; expected {expected}"
        )
    if task == "regression" and labelled:
        raise ConfigError(
            f"data={cfg.name} holds class labels and a regression loss needs numbers; "
            f"expected {CLASSIFICATION_LOSSES}"
        )


def file_columns(cfg: FileDataConfig) -> FileColumns:
    """The file's path, header, feature and target columns, checked against the config."""
    path = resolve_user_path(cfg.path)
    if not path.is_file():
        raise ConfigError(f"data.path={cfg.path!r}: no such file ({path})")
    csv_file = isinstance(cfg, CsvDataConfig)
    header, not_features = csv_header(cfg, path) if csv_file else parquet_header(cfg, path)
    targets = [cfg.target] if isinstance(cfg.target, str) else [str(t) for t in cfg.target]
    for name in targets:
        if name not in header:
            hint = delimiter_hint(cfg.delimiter, header) if csv_file else ""
            raise ConfigError(
                f"data.target={name!r} is not a column of {path.name}; columns: {header}{hint}"
            )
    features = (
        list(cfg.features)
        if cfg.features is not None
        else [c for c in header if c not in targets and c not in not_features]
    )
    for name in features:
        if name not in header:
            raise ConfigError(
                f"data.features: {name!r} is not a column of {path.name}; columns: {header}"
            )
    if not features:
        raise ConfigError(f"data.features: {path.name} has no column left besides the target(s)")
    for name in [*features, *targets]:
        if header.count(name) > 1:
            raise ConfigError(
                f"data.path={cfg.path!r}: the column {name!r} appears {header.count(name)} times "
                "in the header; expected unique column names"
            )
    return FileColumns(path=path, header=header, features=features, targets=targets)


def csv_header(cfg: CsvDataConfig, path: Path) -> tuple[list[str], list[str]]:
    """The CSV's column names (and no columns that are never features)."""
    with path.open("rb") as file:
        if file.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC:
            raise ConfigError(
                f"data.path={cfg.path!r}: a Parquet file, not a CSV; expected data=parquet"
            )
    try:
        # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first name.
        with path.open(newline="", encoding="utf-8-sig") as file:
            header = next(csv.reader(file, delimiter=cfg.delimiter), None)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"data.path={cfg.path!r}: not a readable CSV ({err})") from None
    if not header:
        raise ConfigError(f"data.path={cfg.path!r}: the CSV file is empty")
    return [c.strip() for c in header], []


def delimiter_hint(delimiter: str, header: list[str]) -> str:
    """A header read as one column that holds another delimiter: the file uses that one."""
    if len(header) == 1:
        for other in OTHER_DELIMITERS:
            if other != delimiter and other in header[0]:
                return f"; expected data.delimiter={other!r} (the header looks {other!r}-separated)"
    return ""


def parquet_header(cfg: FileDataConfig, path: Path) -> tuple[list[str], list[str]]:
    """The Parquet file's column names, and the columns pandas keeps its index in
    (`__index_level_0__`), which are never features."""
    # Imported only for Parquet files: pyarrow is a slow import, and every other command's
    # checks must answer within a second (bench row F1).
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise ConfigError(
            f"data.path={cfg.path!r}: not a Parquet file ({err}); expected a file in the "
            "Parquet format (data=csv reads CSV files)"
        ) from None
    index = (schema.pandas_metadata or {}).get("index_columns", [])
    return list(schema.names), [c for c in index if isinstance(c, str)]
