"""Which rows a run trained, validated and was tested on: a digest of the actual rows, where they
came from, their columns and counts. The recorder logs each as an MLflow dataset input (contexts
`training`, `validation`, `test`), so two runs on the same rows show the same digest and a changed
file a new one.

The digest is SHA-1 over the rows as float64 (raw units, before standardization; class indices as
numbers), their shapes, column names and, for labels, the class names in order: a fingerprint,
not a security checksum, and SHA-1 is the fastest of hashlib's on such rows. MLflow's own numpy
digest hashes only the first 10,000 values, so a change further down a file would not show.
Computed in the trainer (the rows are there; sending them to the recorder would cost more), numpy
only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

DIGEST_CHARS = 16  # MLflow stores at most 36; its own digests have 8


@dataclass(frozen=True)
class Origin:
    """Where a table's rows come from, as its records name it."""

    name: str  # the built-in set's name, or the file's name
    source: str  # the file's absolute path, or the built-in set's name
    source_type: str  # "local" (a file) or "code" (made by trainlab or shipped: seed, iris ...)


@dataclass(frozen=True)
class DataRecord:
    """One split of a run's data, as the recorder logs it (plain values: it is pickled)."""

    name: str  # the built-in set's name, or the file's name
    context: str  # "training", "validation" or "test"
    digest: str
    source: str  # the file's absolute path, or the built-in set's name
    source_type: str  # "local" (a file) or "code" (made by trainlab or shipped: seed, iris ...)
    features: tuple[str, ...]
    targets: tuple[str, ...]
    rows: int
    classes: tuple[str, ...] = ()  # a label target's class names in index order
    tensors: str = ""  # a datamodule's first batch: each tensor's shape and dtype


def digest(
    x: np.ndarray,
    y: np.ndarray,
    features: list[str],
    targets: list[str],
    classes: tuple[str, ...] = (),
) -> str:
    return digest_arrays([x, y], features, targets, classes)


def digest_arrays(
    arrays: list[np.ndarray],
    features: list[str],
    targets: list[str],
    classes: tuple[str, ...] = (),
) -> str:
    """The digest of any number of arrays (every tensor a datamodule's batch holds)."""
    sha = hashlib.sha1(usedforsecurity=False)
    for array in arrays:
        array = np.ascontiguousarray(array, dtype=np.float64)
        sha.update(repr(array.shape).encode())
        sha.update(memoryview(array).cast("B"))
    sha.update(repr((features, targets)).encode())
    if classes:  # regression digests stay what runs recorded before labels existed
        sha.update(repr(classes).encode())
    return sha.hexdigest()[:DIGEST_CHARS]


def describe(
    origin: Origin,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    features: list[str],
    targets: list[str],
    classes: tuple[str, ...] = (),
) -> tuple[DataRecord, ...]:
    """A record per split: {"training": (x, y), "validation": (x, y), "test": (x, y)}."""
    return tuple(
        DataRecord(
            name=origin.name,
            context=context,
            digest=digest(x, y, features, targets, classes),
            source=origin.source,
            source_type=origin.source_type,
            features=tuple(features),
            targets=tuple(targets),
            rows=len(x),
            classes=classes,
        )
        for context, (x, y) in splits.items()
    )
