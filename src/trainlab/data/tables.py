"""CSV and Parquet files read by pyarrow in native code (on every core), checked, and made the
raw rows a source gives (data/arrays.py): float64 features and targets, or int64 class indices
and their names for a label column.

No torch here, so that this module can be timed alone (benchmark D1: a 1,000,000 x 20 CSV within
1.3x of `pyarrow.csv.read_csv`) and read new rows for trainlab-evaluate. A CSV is read with its
feature (and regression target) columns typed float64, which spares pyarrow's type inference; a
cell that is not a number makes that read fail, and only then is the file read again as text to
name the column and row.
"""

from __future__ import annotations

from functools import reduce

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from trainlab.config.data import CsvDataConfig, FileDataConfig
from trainlab.data.arrays import RawData, check_task
from trainlab.data.checks import FileColumns, file_columns
from trainlab.data.columns import float_matrix, labels, numeric
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
    where = f"data.path={cfg.path!r}"
    features = [numeric(table[name], name, where, False) for name in columns.features]
    if task == "classification":
        (target,) = columns.targets
        y, classes = labels(table[target], target, cfg.classes)
    else:
        targets = [numeric(table[name], name, where, True) for name in columns.targets]
        y, classes = float_matrix(targets), ()
    return RawData(
        x=float_matrix(features),
        y=y,
        feature_names=columns.features,
        target_names=columns.targets,
        classes=classes,
    )


def read_csv(cfg: CsvDataConfig, columns: FileColumns, task: str) -> pa.Table:
    """The CSV's feature and target columns; rows left blank are skipped (see without_blanks)."""
    numbers = (
        columns.features if task == "classification" else [*columns.features, *columns.targets]
    )
    types = {name: pa.float64() for name in numbers}
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
        for name in numbers:
            numeric(table[name], name, f"data.path={cfg.path!r}", name in columns.targets)
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
    """Without the rows whose every cell read is empty: pyarrow skips empty lines itself, and a
    spreadsheet's export ends with lines of bare delimiters (`,,,`)."""
    if not any(column.null_count for column in table.columns):
        return table
    blank = reduce(pc.and_, [pc.is_null(column) for column in table.columns])
    return table.filter(pc.invert(blank)) if pc.any(blank).as_py() else table


def read_parquet(cfg: FileDataConfig, columns: FileColumns) -> pa.Table:
    try:
        return pq.read_table(columns.path, columns=[*columns.features, *columns.targets])
    except (pa.ArrowInvalid, OSError) as err:
        raise ConfigError(
            f"data.path={cfg.path!r}: not a readable Parquet file ({err}); expected a file in "
            "the Parquet format"
        ) from None
