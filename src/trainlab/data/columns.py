"""Numeric Arrow columns (from a CSV or Parquet file) as the float64 matrix the trainer uses.

Only buffers and numpy here, no pyarrow.compute: a file of plain numbers, read typed, needs no
compute function, and importing pyarrow.compute is a noticeable part of a file's load (bench
row D1, docs/performance.md; data/cells.py has what does). No Python value is turned into an
Arrow one either (`pa.scalar(x)`, `to_numpy`): pyarrow imports pandas the first time it converts
one, in a process that never needs pandas.
"""

from __future__ import annotations

import mmap
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

NUMPY_TYPES = {pa.float64(): np.float64, pa.int32(): np.int32, pa.int64(): np.int64}
PARALLEL_ROWS = 100_000  # below this, a thread pool costs more than it saves
MAPPED_BYTES = 16 << 20  # from this size on, a matrix gets anonymous memory of its own


def float_matrix(columns: list[pa.ChunkedArray]) -> np.ndarray:
    """float64 columns (nulls become NaN) as one C-ordered (rows, columns) matrix, filled one
    record batch at a time (a batch's rows fit in the cache; a whole column at a time would
    touch every row of the matrix once per column), the batches shared out among the cores:
    the matrix is fresh memory, and first touching its pages costs more than the copying."""
    table = pa.Table.from_arrays(columns, names=[str(i) for i in range(len(columns))])
    matrix = fresh_matrix(table.num_rows, len(columns))
    blocks, start = [], 0
    for batch in table.to_batches():
        blocks.append((matrix[start : start + batch.num_rows], batch))
        start += batch.num_rows

    def fill(block: tuple[np.ndarray, pa.RecordBatch]) -> None:
        rows, batch = block
        np.stack([as_numpy(column) for column in batch.columns], axis=1, out=rows)

    if table.num_rows >= PARALLEL_ROWS and len(blocks) > 1:
        with ThreadPoolExecutor(os.cpu_count()) as pool:  # numpy copies without the GIL
            list(pool.map(fill, blocks))
    else:
        for block in blocks:
            fill(block)
    return matrix


def fresh_matrix(rows: int, width: int) -> np.ndarray:
    """An uninitialized float64 matrix; a large one in anonymous memory mapped for it.

    Not np.empty for a large one: numpy asks the kernel for transparent huge pages, and where the
    kernel compacts memory to find them on first touch (THP defrag=madvise), filling a large
    matrix stalls several times longer than in ordinary pages."""
    if rows * width * 8 < MAPPED_BYTES:
        return np.empty((rows, width))
    memory = mmap.mmap(-1, rows * width * 8)  # the array keeps it alive, and frees it with it
    return np.frombuffer(memory, dtype=np.float64).reshape(rows, width)


def as_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric column's values: a view of its buffer, or a copy with NaN where a float is
    missing (pyarrow's own `to_numpy(zero_copy_only=False)` also pays a fixed cost per call
    without nulls, which adds up over a file's many blocks)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    dtype = np.dtype(NUMPY_TYPES[column.type])
    offset = column.offset * dtype.itemsize
    values = np.frombuffer(column.buffers()[1], dtype, count=len(column), offset=offset)
    if not column.null_count:
        return values
    assert dtype.kind == "f", "only floats have a NaN for a missing value"
    values = values.copy()
    values[~valid_rows(column)] = np.nan
    return values


def valid_rows(column: pa.Array) -> np.ndarray:
    """Where an array has a value, from its validity bitmap (Arrow packs 8 rows in a byte)."""
    bits = np.frombuffer(column.buffers()[0], np.uint8)
    return np.unpackbits(bits, bitorder="little")[column.offset : column.offset + len(column)] == 1
