"""The dashboard as `make ui` starts it (`python -m trainlab.commands.dashboard`), on a free port, over a
temporary TRAINLAB_HOME; shared by the dashboard and browser tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trainlab.commands.mlflow_server import is_serving


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ui_command(port: int) -> list[str]:
    return [sys.executable, "-m", "trainlab.commands.dashboard", "--port", str(port)]


def ui_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["TRAINLAB_HOME"] = str(home)
    return env


@contextmanager
def serving(
    command: list[str], env: dict[str, str], port: int, log: Path, timeout: float = 180
) -> Iterator[str]:
    """Start an MLflow server command, wait until it answers on `port`, yield its URL; stop it
    and its workers (its own process group) at the end."""
    with log.open("w") as out:
        server = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while not is_serving("127.0.0.1", port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@contextmanager
def running_dashboard(home: Path, timeout: float = 180) -> Iterator[tuple[str, str]]:
    """Start the dashboard; yield (url, what it printed first); stop it and its workers."""
    port = free_port()
    log = home / f"dashboard-{port}.log"
    with serving(ui_command(port), ui_env(home), port, log, timeout) as url:
        yield url, log.read_text()
