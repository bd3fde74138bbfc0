"""CSV and Parquet files read by pyarrow in native code (on every core), checked, and made the
raw rows a source gives (data/arrays.py): float64 features and targets, or int64 class indices
and their names for a label column.

No torch here, so that this module can be timed alone (bench row D1 in docs/performance.md: a
CSV's load against `pyarrow.csv.read_csv` of it) and read new rows for trainlab-evaluate. A CSV
is read with its feature (and regression target) columns typed float64, which spares pyarrow's
type inference; a cell that is not a number makes that read fail, and only then is the file read
again as text to name the column and row.
"""

from __future__ import annotations

from types import ModuleType

import pyarrow as pa
import pyarrow.csv as pa_csv

from trainlab.config.data import CsvDataConfig, FileDataConfig
from trainlab.data.arrays import RawData, check_task
from trainlab.data.columns import float_matrix
from trainlab.data.file_checks import FileColumns, file_columns
from trainlab.errors import ConfigError


def read_table(cfg: FileDataConfig, task: str) -> RawData:
    """Every row of the file's feature and target columns, in the file's order."""
    check_task(task)
    columns = file_columns(cfg)
    csv_file = isinstance(cfg, CsvDataConfig)
    table = read_csv(cfg, columns, task) if csv_file else read_parquet(cfg, columns)
    if table.num_rows == 0:
        kind = "the CSV has a header but no rows" if csv_file else "the Parquet file has no rows"
        raise ConfigError(f"data.path={cfg.path!r}: {kind}")
    features = numbers(cfg, table, columns.features, is_target=False)
    if task == "classification":
        (target,) = columns.targets
        y, classes = cells().labels(table[target], target, cfg.classes)
    else:
        y, classes = float_matrix(numbers(cfg, table, columns.targets, is_target=True)), ()
    return RawData(
        x=float_matrix(features),
        y=y,
        feature_names=columns.features,
        target_names=columns.targets,
        classes=classes,
    )


def cells() -> ModuleType:
    """trainlab.data.cells, imported on first need (text cells, labels, blank rows): it imports
    pyarrow.compute, an import that a file of plain numbers read typed never needs."""
    from trainlab.data import cells

    return cells


def numbers(
    cfg: FileDataConfig, table: pa.Table, names: list[str], is_target: bool
) -> list[pa.ChunkedArray]:
    """The columns as float64: a CSV's, read typed, as they are; others converted (or refused)."""
    where = f"data.path={cfg.path!r}"
    return [
        table[name]
        if table[name].type == pa.float64()
        else cells().numeric(table[name], name, where, is_target)
        for name in names
    ]


def read_csv(cfg: CsvDataConfig, columns: FileColumns, task: str) -> pa.Table:
    """The CSV's feature and target columns; rows left blank are skipped (see without_blanks)."""
    typed = columns.features if task == "classification" else [*columns.features, *columns.targets]
    types = {name: pa.float64() for name in typed}
    if task == "classification":
        types[columns.targets[0]] = pa.string()  # labels: names or integers, decided later
    try:
        table = read_csv_as(cfg, columns, types)
    except pa.ArrowInvalid as typed_error:
        # A cell that is not a number, or a file pyarrow cannot parse at all: read as text, the
        # columns' own checks then name the cell; a parse error fails here too.
        try:
            table = read_csv_as(cfg, columns, dict.fromkeys(types, pa.string()))
        except pa.ArrowInvalid as err:
            raise ConfigError(
                f"data.path={cfg.path!r}: not a readable CSV ({err}); expected UTF-8 text with "
                "a value (or an empty cell) for every column of the header in every row"
            ) from None
        table = without_blanks(table)
        for name in typed:
            cells().numeric(table[name], name, f"data.path={cfg.path!r}", name in columns.targets)
        raise ConfigError(f"data.path={cfg.path!r}: not a readable CSV ({typed_error})") from None
    return without_blanks(table)


def read_csv_as(
    cfg: CsvDataConfig, columns: FileColumns, types: dict[str, pa.DataType]
) -> pa.Table:
    return pa_csv.read_csv(
        columns.path,
        # The names as the early check read them (stripped); pyarrow skips a UTF-8 BOM.
        read_options=pa_csv.ReadOptions(column_names=columns.header, skip_rows=1),
        parse_options=pa_csv.ParseOptions(delimiter=cfg.delimiter),
        convert_options=pa_csv.ConvertOptions(
            column_types=types, include_columns=list(types), strings_can_be_null=True
        ),
    )


def without_blanks(table: pa.Table) -> pa.Table:
    """Without the rows whose every cell read is empty (blank lines pyarrow skips itself)."""
    if not any(column.null_count for column in table.columns):
        return table
    return cells().without_blanks(table)


def read_parquet(cfg: FileDataConfig, columns: FileColumns) -> pa.Table:
    # Imported only for Parquet files: it would add to every CSV's load (bench row D1).
    import pyarrow.parquet as pq

    try:
        return pq.read_table(columns.path, columns=[*columns.features, *columns.targets])
    except (pa.ArrowInvalid, OSError) as err:
        raise ConfigError(
            f"data.path={cfg.path!r}: not a readable Parquet file ({err}); expected a file in "
            "the Parquet format"
        ) from None
