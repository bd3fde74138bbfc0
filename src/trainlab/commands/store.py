"""`trainlab-store`: look after a tracking store. `stale` lists the runs left RUNNING by processes
that died without a word (`--mark` ends them KILLED, `make stale`); `repair` brings a store that
a cut-short migration left half-made, or an older MLflow left behind, to this MLflow's schema.

trainlab-store stale [--mark] [--store URI]
trainlab-store repair [--store URI]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from typing import NoReturn

from trainlab import paths
from trainlab.errors import ConfigError, one_line
from trainlab.process import console_script

PROG = "trainlab-store"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    stale = commands.add_parser("stale", help="list runs whose processes are gone")
    stale.add_argument(
        "--mark", action="store_true", help="end them KILLED (trainlab.failure=stale)"
    )
    repair = commands.add_parser("repair", help="back up a SQLite store, then fix its schema")
    for command in (stale, repair):
        command.add_argument(
            "--store", default=None, help="the store (default: trainlab's, or MLFLOW_TRACKING_URI)"
        )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    uri = paths.absolute_sqlite_uri(args.store) if args.store else paths.tracking_uri()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # "Creating initial tables..."
    try:
        # Imported here: `trainlab-store --help` answers without loading MLflow.
        from trainlab.recorder import mlflow_store
        from trainlab.recorder.stale_runs import mark_stale, stale_runs

        if args.command == "repair":
            print(mlflow_store.repair(uri))
            return
        client = mlflow_store.open_client(uri)
        found = stale_runs(client)
        for run, reason in found:
            if args.mark:
                mark_stale(client, run, reason)
            print(describe(client, run, reason) + ("; marked KILLED" if args.mark else ""))
    except Exception as err:  # StoreError and whatever MLflow raises: one line
        hint = "" if isinstance(err, ConfigError) else f" (store {uri})"
        print(f"{PROG}: error: {one_line(err)}{hint}", file=sys.stderr)
        sys.exit(2)
    what = "marked KILLED" if args.mark else "stale (`--mark` ends them KILLED)"
    print(f"{len(found)} run(s) {what} in {uri}" if found else f"No stale runs in {uri}")


def describe(client, run, reason: str) -> str:
    started = datetime.datetime.fromtimestamp(run.info.start_time / 1000).strftime("%Y-%m-%d %H:%M")
    experiment = client.get_experiment(run.info.experiment_id).name
    return f"{run.info.run_id} ({experiment} / {run.info.run_name}, started {started}): {reason}"


def cli() -> NoReturn:
    """The console script: main(), then exit without unloading MLflow and torch (trainlab/process.py)."""
    console_script(main)


if __name__ == "__main__":
    cli()
