"""What `make ui` and `make server` share: the `mlflow server` command line and its probes."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
import urllib.error
import urllib.request


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


def server_command(host: str, port: int, store_uri: str, workers: int, *options: str) -> list[str]:
    """`mlflow server` from this environment's bin folder, with the store and `options`."""
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    common = ["--backend-store-uri", store_uri, "--host", host, "--port", str(port)]
    return [mlflow, "server", *common, "--workers", str(workers), *options]


def port_number(text: str) -> int:
    """An argparse type: a TCP port (a value outside 1-65535 is one usage line, not a traceback)."""
    port = positive_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port; expected 1 to 65535")
    return port


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number >= 1")
    return value
