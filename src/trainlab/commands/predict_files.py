"""What trainlab-predict reads and writes besides the model: a CSV of rows in, its answers out
(printed, or a CSV beside the inputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trainlab.errors import one_line


class PredictError(ValueError):
    """What the user asked for cannot be done; the message is the one line they read."""


def read_csv(path: Path, feature_names: list[str], n_features: int) -> Any:
    """The feature columns of a CSV with a header: by the model's feature names when present."""
    import pandas as pd

    if not path.is_file():
        raise PredictError(f"--csv {path}: no such file")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise PredictError(f"--csv {path}: not a readable CSV ({one_line(err)})") from None
    columns = [str(c) for c in frame.columns]
    if feature_names and set(feature_names) <= set(columns):
        frame = frame[feature_names]
    elif len(columns) != n_features:
        wanted = f"columns {feature_names}" if feature_names else f"{n_features} columns"
        raise PredictError(f"--csv {path}: has columns {columns}; the model expects {wanted}")
    try:
        rows = frame.to_numpy(dtype=np.float64)
    except ValueError:
        raise PredictError(f"--csv {path}: non-numeric values; expected numbers only") from None
    bad = np.argwhere(~np.isfinite(rows))
    if len(bad):
        raise PredictError(
            f"--csv {path}: row {bad[0][0]} has an empty, NaN or inf value; expected numbers only"
        )
    return rows


def classified(table: Any) -> list[str]:
    """`setosa  setosa=0.979 versicolor=0.0205 virginica=2.9e-06` per row: the label, then every
    class's probability."""
    columns = [c for c in table.columns if c.startswith("probability_")]
    lines = []
    for _, row in table.iterrows():
        probabilities = " ".join(f"{c.removeprefix('probability_')}={row[c]:.6g}" for c in columns)
        lines.append(f"{row['label']}  {probabilities}")
    return lines


def write_csv(path: Path, rows: np.ndarray, predictions: Any, model: Any, names: list) -> None:
    import pandas as pd

    inputs = list((model.metadata.metadata or {}).get("feature_names") or [])
    if len(inputs) != rows.shape[1]:
        inputs = [f"x{i}" for i in range(rows.shape[1])]
    frame = pd.DataFrame(rows, columns=inputs)
    if hasattr(predictions, "columns"):  # a classifier: its label and probabilities
        frame = pd.concat([frame, predictions.reset_index(drop=True)], axis=1)
    for i, name in enumerate(names):
        frame[f"predicted_{name}"] = predictions[:, i]
    try:
        frame.to_csv(path, index=False)
    except OSError as err:
        raise PredictError(f"--out {path}: cannot write ({err.strerror})") from None
