"""`make ui`: the MLflow dashboard over trainlab's store, on 127.0.0.1 only.

Run twice, it reports the dashboard already serving on that port instead of failing with a
port error; a port held by another program is reported in one line, with the way out.
"""

from __future__ import annotations

import argparse
import os
import sys

from trainlab import paths
from trainlab.serve.mlflow_server import is_serving, port_taken, server_command


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1, help="server processes (default: 1)")
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
    store = args.store or paths.tracking_uri()
    print(f"MLflow dashboard at {url} (store {store}); Ctrl-C stops it", flush=True)
    # One person's dashboard: MLflow's default of 4 workers quadruples start time and memory.
    artifacts = paths.default_artifact_root().as_uri()
    command = server_command(
        args.host, args.port, store, args.workers, "--default-artifact-root", artifacts
    )
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
