"""`make ui`: the MLflow dashboard over trainlab's store, on 127.0.0.1 only.

Run twice, it reports the dashboard already serving on that port instead of failing with a
port error; a port held by another program is reported in one line, with the way out. Before
the server starts, the store is opened here under its lock (created if new: the server's
workers would race to create it; a half-migrated store is one line on how to repair it), and
runs left RUNNING by processes that died are ended KILLED, so the dashboard shows them as such.
"""

from __future__ import annotations

import argparse
import os
import sys

from trainlab import paths
from trainlab.commands.mlflow_server import (
    is_serving,
    port_number,
    port_taken,
    positive_int,
    server_command,
)
from trainlab.errors import one_line
from trainlab.tracking.store_checks import MODEL_TRAINING_VIEW, sqlite_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="trainlab-ui", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=port_number, default=5000)
    parser.add_argument(
        "--workers", type=positive_int, default=1, help="server processes (default: 1)"
    )
    parser.add_argument(
        "--store", default=None, help="backend store URI (default: the embedded store)"
    )
    args = parser.parse_args(argv)
    url = f"http://{args.host}:{args.port}"
    if is_serving(args.host, args.port):
        print(f"The MLflow dashboard is already running at {url}")
        return
    if port_taken(args.host, args.port):
        print(
            f"trainlab-ui: error: port {args.port} on {args.host} is taken by another program "
            f"(not an MLflow dashboard); choose another port: make ui UI_PORT={args.port + 1}",
            file=sys.stderr,
        )
        sys.exit(2)
    store = paths.absolute_sqlite_uri(args.store) if args.store else paths.tracking_uri()
    prepare_store(store)
    print(f"MLflow dashboard at {url} (store {store}); Ctrl-C stops it", flush=True)
    print(f"Runs and sweeps: {url}/#/experiments{MODEL_TRAINING_VIEW}", flush=True)
    # One person's dashboard: MLflow's default of 4 workers quadruples start time and memory.
    artifacts = paths.default_artifact_root().as_uri()
    command = server_command(
        args.host, args.port, store, args.workers, "--default-artifact-root", artifacts
    )
    os.execv(command[0], command)


def prepare_store(store: str) -> None:
    """Create or check an embedded (SQLite) store, and end its stale runs; one line and exit 2
    when it cannot be used. (A database server is left to `mlflow server`, which retries.)"""
    if sqlite_path(store) is None:
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # Imported here, not at the top: they load MLflow, and the port checks answer without it.
    from trainlab.recorder.mlflow_store import open_client
    from trainlab.recorder.stale_runs import end_stale_runs

    try:
        ended = end_stale_runs(open_client(store))
    except Exception as err:
        print(f"trainlab-ui: error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    if ended:
        print(f"{len(ended)} stale run(s) (their processes are gone) ended KILLED")


if __name__ == "__main__":
    main()
