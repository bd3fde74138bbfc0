"""Cells that need pyarrow's compute functions: text turned into numbers (and the first cell that
is not one), labels and their classes, the blank rows of a CSV.

Imported only when a file has such cells (data/tables.py): pyarrow.compute is a slow import.
No Python value is turned into an Arrow one on the way (`pc.equal(column, "")`, `pa.scalar(x)`):
pyarrow imports pandas the first time it converts one, in a process that never needs pandas;
nulls come from `pa.nulls`, numbers leave through their buffers.
"""

from __future__ import annotations

from functools import reduce

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainlab.data.columns import as_numpy
from trainlab.errors import ConfigError

LABEL_HINT = "or, for class labels, a classification loss: loss=cross_entropy or bce_with_logits"


class UnknownLabel(ConfigError):
    """A label that is not one of the given classes (trainlab-evaluate says it its own way)."""

    def __init__(self, message: str, label: str, row: int) -> None:
        super().__init__(message)
        self.label, self.row = label, row


def missing(kind: pa.DataType) -> pa.Scalar:
    """A null of `kind`, made without converting a Python value."""
    return pa.nulls(1, kind)[0]


def numeric(column: pa.ChunkedArray, name: str, where: str, is_target: bool) -> pa.ChunkedArray:
    """A column of numbers as float64 (empty cells: null); one line if it holds anything else."""
    kind = column.type
    if kind == pa.float64():
        return column
    if pa.types.is_dictionary(kind):
        return numeric(column.cast(kind.value_type), name, where, is_target)
    if pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind):
        return column.cast(pa.float64())
    if pa.types.is_null(kind):
        return pc.cast(column, pa.float64())
    if is_text(kind):
        text = stripped(column)
        try:
            return pc.cast(text, pa.float64())
        except pa.ArrowInvalid:
            raise non_numeric(text, name, where, is_target) from None
    raise non_numeric(column, name, where, is_target)


def is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def stripped(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text without surrounding spaces; a cell left empty is a missing value (null)."""
    text = pc.utf8_trim_whitespace(column)
    empty = pc.invert(pc.cast(pc.utf8_length(text), pa.bool_()))
    return pc.if_else(empty, missing(text.type), text)


def non_numeric(column: pa.ChunkedArray, name: str, where: str, is_target: bool) -> ConfigError:
    row, value = first_not_a_number(column)
    hint = f" ({LABEL_HINT})" if is_target else ""
    return ConfigError(
        f"{where}: column {name!r} has non-numeric values ({value!r} in row {row}); "
        f"expected numbers{hint}"
    )


def first_not_a_number(column: pa.ChunkedArray) -> tuple[int, object]:
    """The first row (and its value) that is not a number in pyarrow's own reading: found by
    bisecting with its cast (a few dozen casts of slices, not a Python loop over the rows)."""
    values = column.combine_chunks()
    if not is_text(values.type):  # booleans, dates ...: the first value there is
        valid = pc.is_valid(values)
        row = first_row(valid) if pc.any(valid).as_py() else 0
        return row, values[row].as_py()
    low, high = 0, len(values)  # values[low:high] holds one that fails
    while high - low > 1:
        middle = (low + high) // 2
        try:
            pc.cast(values.slice(low, middle - low), pa.float64())
            low = middle
        except pa.ArrowInvalid:
            high = middle
    return low, values[low].as_py()


def labels(
    column: pa.ChunkedArray, name: str, classes: list[str] | None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """A label column (strings or integers) as int64 indices into the class names; the names in
    `classes`' order, else sorted (integers numerically)."""
    values = label_values(column, name)
    if values.null_count:
        row = first_row(pc.is_null(values))
        raise ConfigError(
            f"data.target={name!r} has no label in row {row} (an empty or NaN cell); expected "
            "a class in every row"
        )
    integers = pa.types.is_integer(values.type)
    if classes is None:
        found = pc.unique(values)
        value_set = found.take(pc.sort_indices(found))
        names = tuple(str(v) for v in value_set.to_pylist())
    else:
        value_set, names = class_values(classes, integers, name), tuple(classes)
    index = pc.index_in(values, value_set=value_set)
    if index.null_count:
        row = first_row(pc.is_null(index))
        label = str(values[row].as_py())
        raise UnknownLabel(
            f"data.target={name!r} has the label {label!r} in row {row}, which is not one of "
            f"data.classes {list(classes or [])}; expected one of those (or data.classes=null: "
            "the labels found)",
            label,
            row,
        )
    return as_numpy(index).astype(np.int64), names


def label_values(column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """Labels as int64 or as stripped strings, missing ones null. Floats are labels only when
    every one is a whole number, as scikit-learn's type_of_target decides; else they are a
    regression target."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return label_values(column.cast(kind.value_type), name)
    if pa.types.is_integer(kind):
        return column.cast(pa.int64())
    if pa.types.is_boolean(kind):
        return column.cast(pa.string())
    if pa.types.is_null(kind):
        return pc.cast(column, pa.int64())
    if pa.types.is_floating(kind):
        return whole_numbers(column, name)
    if not is_text(kind):
        raise ConfigError(
            f"data.target={name!r} holds {kind} values; expected class labels (strings or integers)"
        )
    text = stripped(column)
    for number in (pa.int64(), pa.float64()):
        try:
            numbers = pc.cast(text, number)
        except pa.ArrowInvalid:
            continue
        return numbers if number == pa.int64() else whole_numbers(numbers, name)
    return text


def whole_numbers(column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """Float labels as int64 (NaN: missing); a fraction or inf is a regression target."""
    column = pc.if_else(pc.is_nan(column), missing(column.type), column)
    whole = pc.and_(pc.is_finite(column), pc.equal(pc.floor(column), column))
    not_whole = pc.and_kleene(pc.is_valid(column), pc.invert(whole))
    if pc.any(not_whole).as_py():
        row = first_row(not_whole)
        raise ConfigError(
            f"data.target={name!r} holds numbers such as {column[row].as_py()!r} (row {row}), a "
            "regression target, and a classification loss needs class labels; expected a "
            "column of class names or integers (or a regression loss: mse, l1, huber, smooth_l1)"
        )
    return column.cast(pa.int64())


def class_values(classes: list[str], integers: bool, name: str) -> pa.Array:
    """data.classes as values of the label column: integers for a column of integers."""
    if not integers:
        return pa.array(classes, pa.string())
    try:
        return pa.array([int(c) for c in classes], pa.int64())
    except ValueError:
        raise ConfigError(
            f"data.classes={classes}: the column {name!r} holds integer labels; expected "
            "the integers as class names (data.classes=[0,1,2])"
        ) from None


def first_row(flags: pa.ChunkedArray | pa.Array) -> int:
    """The first row where a boolean column is true."""
    return pc.indices_nonzero(flags)[0].as_py()


def without_blanks(table: pa.Table) -> pa.Table:
    """Without the rows whose every cell read is empty: pyarrow skips empty lines itself, and a
    spreadsheet's export ends with lines of bare delimiters (`,,,`)."""
    blank = reduce(pc.and_, [pc.is_null(column) for column in table.columns])
    return table.filter(pc.invert(blank)) if pc.any(blank).as_py() else table
