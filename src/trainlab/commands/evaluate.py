"""`trainlab-evaluate`: a logged model scored on new rows, into an evaluation run of its own.

trainlab-evaluate RUN_ID --data new_rows.csv            the run's target column, its features
trainlab-evaluate RUN_ID --data new.parquet --target y  another target column name

The rows are read as the run's own data was (data/tables.py: the same checks and one-line
errors; the model's feature columns; a classifier's labels checked against the classes it knows),
the model predicts them, and scikit-learn scores them as a run's test split is scored
(recorder/held_out.py): `eval/r2` ... or `eval/accuracy` ... An evaluation run in the model's
experiment records the scores (linked to the model, so the model's page lists them), the plots,
the file as a dataset input, and tags naming the run and model it evaluated.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import yaml

from trainlab import collector, paths
from trainlab.commands.predict import (
    add_trust_option,
    feature_names,
    input_width,
    load,
    model_uri,
    predict,
)
from trainlab.config.data import CsvDataConfig, ParquetDataConfig
from trainlab.data.arrays import RawData
from trainlab.data.cells import UnknownLabel
from trainlab.data.lineage import DataRecord, digest
from trainlab.data.tables import read_table
from trainlab.errors import ConfigError, one_line
from trainlab.process import console_script
from trainlab.tracking.payloads import Evaluation

PROG = "trainlab-evaluate"
PREFIX = "eval/"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the run id whose logged model is evaluated")
    parser.add_argument("--data", required=True, help="a CSV or Parquet file with the target")
    parser.add_argument("--target", help="the target column (default: the run's data.target)")
    parser.add_argument("--delimiter", help="the CSV's delimiter (default: the run's)")
    parser.add_argument("--tracking-uri", help="the MLflow store (default: trainlab's)")
    add_trust_option(parser)
    return parser.parse_args(argv)


def rows_config(path: Path, recorded: dict[str, Any], args: argparse.Namespace, model: Any):
    """The new rows' file read as the run's data was: its target, the model's features."""
    metadata = model.metadata.metadata or {}
    named = list(metadata.get("target_names") or [])
    # A file's run names its column (data.target: a file's data has a path; data=custom's
    # data.target is its datamodule's class); a scikit-learn set's model names its one target.
    column = recorded.get("target") if "path" in recorded else None
    target = args.target or column or (named[0] if len(named) == 1 else None)
    if target is None:
        raise ConfigError(
            f"--target: the run's data ({recorded.get('name')}) names no target column; "
            "expected --target <column> of the file"
        )
    classes = list(metadata.get("class_names") or []) or None
    common = {
        "path": str(path),
        "target": target,
        "features": feature_names(model) or None,
        "classes": classes,
    }
    if path.suffix.lower() in (".parquet", ".pq"):
        return ParquetDataConfig(**common)
    delimiter = args.delimiter or recorded.get("delimiter") or ","
    return CsvDataConfig(**common, delimiter=delimiter)


def read_new_rows(cfg: CsvDataConfig | ParquetDataConfig, task: str) -> RawData:
    """The file's rows; a label the model never saw is said in the model's terms."""
    try:
        return read_table(cfg, task)
    except UnknownLabel as err:
        raise ConfigError(
            f"--data {cfg.path}: the label {err.label!r} in row {err.row} of column "
            f"{cfg.target!r} is not a class the model was trained on; expected one of "
            f"{list(cfg.classes or [])}"
        ) from None


def evaluation_of(model: Any, raw: RawData) -> Evaluation:
    answer = predict(model, raw.x)
    if hasattr(answer, "columns"):  # a classifier: its probabilities, in the class order
        columns = [c for c in answer.columns if c.startswith("probability_")]
        predicted = answer[columns].to_numpy(dtype=np.float64)
        # float32 softmax rows sum to 1 within 1e-7; scikit-learn's log loss warns about less.
        predicted = predicted / predicted.sum(axis=1, keepdims=True)
        return Evaluation(
            targets=raw.y, predicted=predicted, target_names=raw.target_names, classes=raw.classes
        )
    predicted = np.asarray(answer, dtype=np.float64)
    return Evaluation(targets=raw.y, predicted=predicted, target_names=raw.target_names)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # MLflow draws a progress bar on stderr for every artifact it downloads; the scores are the output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        store = paths.absolute_sqlite_uri(args.tracking_uri or paths.tracking_uri())
        path = paths.resolve_user_path(args.data)
        with collector.paused():  # MLflow and torch import here (trainlab/collector.py)
            model = load(model_uri(args.run), store, args.trust_pickle)
            # MLflow's client and scikit-learn: not for --help or a bad argument.
            from trainlab.commands.evaluate_run import record

        recorded = recorded_data(store, args.run)
        task = (
            "classification" if (model.metadata.metadata or {}).get("class_names") else "regression"
        )
        raw = read_new_rows(rows_config(path, recorded, args, model), task)
        if raw.x.shape[1] != input_width(model):
            raise ConfigError(
                f"--data {path}: {raw.x.shape[1]} feature columns; the model takes "
                f"{input_width(model)}"
            )
        evaluation = evaluation_of(model, raw)
        source = DataRecord(
            name=path.name,
            context="evaluation",
            digest=digest(raw.x, raw.y, raw.feature_names, raw.target_names),
            source=str(path),
            source_type="local",
            features=tuple(raw.feature_names),
            targets=tuple(raw.target_names),
            rows=len(raw.x),
        )
        outcome = record(store, args.run, model, evaluation, source, PREFIX)
    except Exception as err:  # ConfigError, and whatever MLflow or torch raise: one line
        fail(err)
    for key, value in sorted(outcome.metrics.items()):
        print(f"{key} = {value:.6g}")
    for warning in outcome.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    print(f"Evaluation run {outcome.run_id} of run {args.run}'s model {outcome.model_uri}")


def recorded_data(store: str, run_id: str) -> dict[str, Any]:
    """The run's data config, as its config/resolved.yaml recorded it."""
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory(prefix="trainlab-evaluate-") as folder:
        try:
            local = MlflowClient(store).download_artifacts(run_id, "config/resolved.yaml", folder)
        except Exception:
            return {}
        return (yaml.safe_load(Path(local).read_text()) or {}).get("data") or {}


def fail(err: BaseException) -> NoReturn:
    print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
    sys.exit(2)


def cli() -> NoReturn:
    """The console script: main(), then exit without unloading MLflow and torch."""
    console_script(main)


if __name__ == "__main__":
    cli()
