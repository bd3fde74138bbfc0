"""`make ui`: the MLflow dashboard over trainlab's store, on 127.0.0.1 only.

Run twice, it reports the dashboard already serving on that port instead of failing with a
port error; a port held by another program is reported in one line, with the way out.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
import urllib.error
import urllib.request

from trainlab import paths


def is_serving(host: str, port: int) -> bool:
    """True when an MLflow server answers /health on host:port."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def port_taken(host: str, port: int) -> bool:
    """True when something (not necessarily MLflow) already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            return err.errno == errno.EADDRINUSE
    return False


def server_command(host: str, port: int, store_uri: str, workers: int = 1) -> list[str]:
    return [
        os.path.join(os.path.dirname(sys.executable), "mlflow"),
        "server",
        "--backend-store-uri",
        store_uri,
        "--default-artifact-root",
        paths.default_artifact_root().as_uri(),
        "--host",
        host,
        "--port",
        str(port),
        # One person's dashboard: MLflow's default of 4 workers quadruples start time and memory.
        "--workers",
        str(workers),
    ]


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
    command = server_command(args.host, args.port, store, args.workers)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
