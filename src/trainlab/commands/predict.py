"""`trainlab-predict`: predictions of a logged model, from numbers typed or a CSV file.

trainlab-predict RUN_ID 5                    one row of features (here one feature): prints f(5)
trainlab-predict RUN_ID --row 1,2 --row 3,4  several rows
trainlab-predict runs:/RUN_ID/model --csv in.csv --out predictions.csv
trainlab-predict models:/NAME@current 5      a registered model by alias (or models:/NAME/3)
trainlab-predict RUN_ID --image cat.png      image files, for a model trained on images

The model is read as data (commands/logged_model.py): a model pickled by an older trainlab loads
only with --trust-pickle.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from trainlab import collector, paths
from trainlab.commands.predict_files import PredictError, classified, read_csv, write_csv
from trainlab.process import console_script
from trainlab.tracking.store_checks import sqlite_path

PROG = "trainlab-predict"
RUN_ID = re.compile(r"[0-9a-f]{32}")
MODEL_NAME = "model"  # what trainlab-train logs: runs:/<run_id>/model


def model_uri(model: str) -> str:
    """A run id becomes runs:/<id>/model; runs:/ and models:/ URIs are taken as they are."""
    if model.startswith(("runs:/", "models:/")):
        return model
    if RUN_ID.fullmatch(model):
        return f"runs:/{model}/{MODEL_NAME}"
    raise PredictError(
        f"{model!r} is neither a run id (32 hex digits) nor a runs:/ or models:/ URI"
    )


def parse_row(text: str) -> list[float]:
    """'1,2.5' or '1 2.5' -> [1.0, 2.5]; anything else is a PredictError."""
    values = [v for v in re.split(r"[,\s]+", text.strip()) if v]
    return [parse_number(v) for v in values]


def parse_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PredictError(f"{text!r} is not a number; expected inputs like 5 or -1.5e3") from None
    if not math.isfinite(value):
        raise PredictError(f"{text!r} is not a finite number")
    return value


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


@contextmanager
def tracking_store(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (which resolves runs:/ and models:/) at `uri` for one call.

    `mlflow.set_tracking_uri` sets MLflow's own default store and MLFLOW_TRACKING_URI in
    os.environ (it keeps the two equal); both are put back as they were, so that a caller in the
    same process (a notebook, the Python API, tests) keeps its own store, and a later
    `trainlab.evaluate` or MlflowClient() does not look for its runs in this one.
    """
    import mlflow

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved)  # None unsets both


def load(uri: str, tracking_uri: str, trust_pickle: bool = False) -> Any:
    """The model, loaded as data (commands/logged_model.py); a missing run, model or store is one
    PredictError."""
    # Imported here, not at the top: these load MLflow (slow), and argument errors answer without.
    from mlflow.exceptions import MlflowException

    from trainlab.commands.logged_model import load_logged_model
    from trainlab.recorder.mlflow_store import open_client
    from trainlab.recorder.model import import_pytorch_flavor

    database = sqlite_path(tracking_uri)
    if database is not None and not database.is_file():
        raise PredictError(
            f"no store at {database}; expected TRAINLAB_HOME, MLFLOW_TRACKING_URI or "
            "--tracking-uri to name the store the run is in"
        )
    open_client(tracking_uri)  # checked under its lock: a half-migrated store is one line
    import_pytorch_flavor()  # the model is an nn.Module: Lightning's autologging is not needed
    try:
        with tracking_store(tracking_uri):
            return load_logged_model(uri, trust_pickle)
    except MlflowException as err:
        if uri.startswith("runs:/") and "not found" in str(err).lower():
            run_id = uri.split("/")[1]
            raise PredictError(f"no run {run_id} in the store {tracking_uri}") from None
        if uri.startswith("runs:/"):
            raise PredictError(
                f"{uri}: no model in this run (trained with tracking.log_model=false, or it "
                f"failed before the model was logged); store {tracking_uri}"
            ) from None
        raise PredictError(f"{uri}: {one_line(err)} (store {tracking_uri})") from None


def predict(model: Any, rows: np.ndarray) -> Any:
    """Rows of raw features -> (rows, targets) predictions, in the dtype the model was logged;
    a classifier's answer is a table: `label` and one `probability_<class>` per class."""
    spec = model.metadata.get_input_schema()
    n_features = input_width(model)
    if rows.ndim > 2:  # images, checked against the signature when they were decoded
        return model.predict(rows.astype(np.float32))
    if rows.shape[1] != n_features:
        raise PredictError(
            f"got {rows.shape[1]} value(s) per row; the model takes {n_features} feature(s)"
            + (f" ({', '.join(feature_names(model))})" if feature_names(model) else "")
        )
    dtype = spec.inputs[0].type if spec is not None else np.float32
    output = model.predict(rows.astype(dtype))
    if hasattr(output, "columns"):  # a classifier (recorder/served_classifier.py)
        return output
    return np.asarray(output).reshape(len(rows), -1)


def input_width(model: Any) -> int:
    spec = model.metadata.get_input_schema()
    if spec is None or not spec.is_tensor_spec():
        raise PredictError("the model has no tensor signature; log it with trainlab-train")
    return int(spec.inputs[0].shape[-1])


def feature_names(model: Any) -> list[str]:
    return list((model.metadata.metadata or {}).get("feature_names") or [])


def target_names(model: Any, width: int) -> list[str]:
    names = list((model.metadata.metadata or {}).get("target_names") or [])
    return names if len(names) == width else [f"y{i}" for i in range(width)]


def fail(err: BaseException) -> NoReturn:
    print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Predict with a model trainlab logged to MLflow.",
        epilog="Negative numbers in --row: --row=-1,2",
    )
    parser.add_argument("model", help="a run id, runs:/<run_id>/model or models:/<name>@<alias>")
    parser.add_argument("values", nargs="*", help="one row of features, e.g. 5 (or 1.2 3.4)")
    parser.add_argument(
        "--row", action="append", default=[], help="one row, '1,2,3'; repeat for several rows"
    )
    parser.add_argument("--csv", type=Path, help="a CSV file with a header: one row per line")
    parser.add_argument("--out", type=Path, help="write inputs and predictions to this CSV")
    parser.add_argument(
        "--image", type=Path, action="append", default=[],
        help="an image file (PNG, JPEG) for a model trained on images; repeat for several",
    )  # fmt: skip
    parser.add_argument(
        "--tracking-uri", default=None, help="the MLflow store (default: trainlab's store)"
    )
    add_trust_option(parser)
    return parser.parse_args(argv)


def add_trust_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load a model pickled by an older trainlab (unpickling runs whatever code the "
        "file holds: only for stores where you trust everyone who can write)",
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # MLflow draws a progress bar on stderr for every download; here stdout is the answer.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        uri = model_uri(args.model)
        typed_rows = [[parse_number(v) for v in args.values]] if args.values else []
        typed_rows += [parse_row(r) for r in args.row]
        if any(not row for row in typed_rows):
            raise PredictError("--row '': an empty row; expected numbers like --row 1,2")
        given = [bool(typed_rows), args.csv is not None, bool(args.image)]
        if not any(given):
            raise PredictError(
                "no inputs: give numbers (trainlab-predict RUN 5), --row, --csv or --image"
            )
        if sum(given) > 1:
            raise PredictError("give one of numbers/--row, --csv or --image, not several")
        widths = {len(row) for row in typed_rows}
        if len(widths) > 1:
            raise PredictError(f"rows of different lengths {sorted(widths)}; expected one length")
        store = paths.absolute_sqlite_uri(args.tracking_uri or paths.tracking_uri())
        with collector.paused():  # MLflow and torch import here (trainlab/collector.py)
            model = load(uri, store, args.trust_pickle)
        if args.image:
            # Pillow, Lightning and the image datamodules: only for a command that reads images.
            from trainlab.commands.image_inputs import image_rows

            rows = image_rows(model, [paths.resolve_user_path(str(f)) for f in args.image])
        elif args.csv is not None:
            csv = paths.resolve_user_path(str(args.csv))
            rows = read_csv(csv, feature_names(model), input_width(model))
        else:
            rows = np.asarray(typed_rows, dtype=np.float64)
        if len(rows) == 0:
            raise PredictError(f"--csv {args.csv}: no rows")
        predictions = predict(model, rows)
        names = [] if hasattr(predictions, "columns") else target_names(model, predictions.shape[1])
        if args.out is not None:
            write_csv(paths.resolve_user_path(str(args.out)), rows, predictions, model, names)
            print(f"{len(rows)} prediction(s) written to {args.out}")
            return
    except Exception as err:  # PredictError, and whatever MLflow or torch raise: one line
        fail(err)
    if hasattr(predictions, "columns"):
        labels = [f"{f}  " for f in args.image] or [""] * len(predictions)
        for label, line in zip(labels, classified(predictions), strict=True):
            print(f"{label}{line}")
        return
    for values in predictions:
        print(" ".join(f"{v:.8g}" for v in values))


def cli() -> NoReturn:
    """The console script: main(), then exit without unloading MLflow and torch (trainlab/process.py)."""
    console_script(main)


if __name__ == "__main__":
    cli()
