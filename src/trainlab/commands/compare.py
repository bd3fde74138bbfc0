"""`trainlab-compare`: runs side by side from the command line.

trainlab-compare RUN_A RUN_B [RUN_C ...]    runs by id
trainlab-compare SWEEP_PARENT_ID            every child run of a sweep (tag mlflow.parentRunId)
trainlab-compare RUN_A RUN_B --json         the same as one JSON object, for scripts

It prints the config keys whose values differ, the final metrics side by side, each run's data
digests (same digest: same rows) and writes an overlay plot of their `train/loss` to a file (its
path is printed). The store is trainlab's (TRAINLAB_HOME, or MLFLOW_TRACKING_URI) unless
`--tracking-uri` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from trainlab import collector, paths
from trainlab.process import console_script
from trainlab.tracking.store_checks import sqlite_path

PROG = "trainlab-compare"
# The metrics that sum a run up; per-step trajectories (weight/..., system/...) are left out.
SUMMARY_PREFIXES = ("final/", "pred/", "ols/loss", "train/loss", "val/loss", "rerun/max_diff")
CONTEXT_TAG = "mlflow.data.context"


class CompareError(ValueError):
    """What the user asked for cannot be done; the message is the one line they read."""


def open_store(uri: str) -> Any:
    from mlflow.tracking import MlflowClient  # only here: --help and argument errors stay fast

    database = sqlite_path(uri)
    if database is not None and not database.is_file():
        raise CompareError(f"no store at {uri} (set TRAINLAB_HOME or --tracking-uri)")
    return MlflowClient(tracking_uri=uri)


def expand(client: Any, ids: list[str], uri: str) -> list[Any]:
    """The runs named, a sweep's parent replaced by its children (in the order they started)."""
    from mlflow.exceptions import MlflowException

    runs: dict[str, Any] = {}
    for run_id in ids:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise CompareError(f"no run {run_id!r} in the store {uri}") from None
        children = client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'",
            order_by=["attributes.start_time ASC"],
        )
        for each in children or [run]:
            runs.setdefault(each.info.run_id, each)
    if len(runs) < 2:
        raise CompareError("one run to compare; expected two run ids or more, or a sweep's parent")
    return list(runs.values())


def labels(count: int) -> list[str]:
    letters = string.ascii_uppercase
    return [letters[i] if count <= len(letters) else str(i + 1) for i in range(count)]


def compare(runs: list[Any]) -> dict[str, Any]:
    """Everything the table and --json show, as plain values."""
    params = [run.data.params for run in runs]
    config = {
        key: [p.get(key) for p in params]
        for key in sorted(set().union(*params))
        if len({p.get(key) for p in params}) > 1
    }
    metric_keys = sorted(
        {k for run in runs for k in run.data.metrics if k.startswith(SUMMARY_PREFIXES)}
    )
    metrics = {key: [run.data.metrics.get(key) for run in runs] for key in metric_keys}
    datasets = [
        [
            {
                "name": item.dataset.name,
                "digest": item.dataset.digest,
                "context": next((t.value for t in item.tags if t.key == CONTEXT_TAG), ""),
                "source": item.dataset.source,
            }
            for item in (run.inputs.dataset_inputs if run.inputs else [])
        ]
        for run in runs
    ]
    described = [
        {"label": label, "run_id": run.info.run_id, "run_name": run.info.run_name,
         "status": run.info.status, "experiment_id": run.info.experiment_id}
        for label, run in zip(labels(len(runs)), runs, strict=True)
    ]  # fmt: skip
    return {"runs": described, "config": config, "metrics": metrics, "datasets": datasets}


def overlay_plot(client: Any, runs: list[Any], path: Path) -> Path:
    """Every run's train/loss on one set of axes (log scale when it falls by decades)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), layout="tight")
    axes = figure.subplots()
    values: list[float] = []
    for label, run in zip(labels(len(runs)), runs, strict=True):
        points = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id,
                        "train/loss"))  # fmt: skip
        name = f"{label}: {run.info.run_name or run.info.run_id[:8]}"
        axes.plot([s for s, _ in points], [v for _, v in points], label=name)
        values += [v for _, v in points]
    positive = [v for v in values if v > 0]
    if positive and len(positive) == len(values) and max(positive) / min(positive) > 50:
        axes.set_yscale("log")
    axes.set(xlabel="step", ylabel="train/loss", title="train/loss")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def columns(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]  # fmt: skip


def text_report(result: dict[str, Any]) -> str:
    runs = result["runs"]
    heads = [r["label"] for r in runs]
    lines = ["Runs:"]
    lines += columns([[r["label"], r["run_id"], r["run_name"] or "", r["status"]] for r in runs])
    config = result["config"]
    lines.append(f"Config that differs ({len(config)} keys):" if config else "Config: the same")
    if config:
        lines += columns([["key", *heads]] + [[k, *map(cell, v)] for k, v in config.items()])
    lines.append("Final metrics:")
    metrics = result["metrics"]
    lines += columns([["metric", *heads]] + [[k, *map(cell, v)] for k, v in metrics.items()])
    lines.append("Data (digest: the same rows give the same digest):")
    for run, datasets in zip(runs, result["datasets"], strict=True):
        text = ", ".join(f"{d['context']} {d['name']}@{d['digest']}" for d in datasets)
        lines.append(f"  {run['label']}  {text or '-'}")
    return "\n".join(lines)


def fail(err: BaseException) -> NoReturn:
    print(f"{PROG}: error: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Compare runs trainlab recorded.")
    parser.add_argument("runs", nargs="+", help="run ids, or a sweep's parent run id")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", type=Path, help="where to write the train/loss overlay (.png)")
    parser.add_argument("--tracking-uri", help="the MLflow store (default: trainlab's store)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        uri = args.tracking_uri or paths.tracking_uri()
        with collector.paused():  # MLflow imports here (trainlab/collector.py)
            client = open_store(uri)
        runs = expand(client, args.runs, uri)
        result = compare(runs)
        default = (
            paths.home()
            / "outputs"
            / "compare"
            / f"train_loss-{time.strftime('%Y%m%d-%H%M%S')}.png"
        )
        plot = paths.resolve_user_path(str(args.plot)) if args.plot else default
        result["plot"] = str(overlay_plot(client, runs, plot))
    except Exception as err:  # CompareError, and whatever MLflow raises: one line
        fail(err)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(text_report(result))
        print(f"Plot of train/loss: {result['plot']}")


def cli() -> NoReturn:
    """The console script: main(), then exit without unloading MLflow and torch (trainlab/process.py)."""
    console_script(main)


if __name__ == "__main__":
    cli()
