"""The dashboard as `make ui` starts it (`python -m trainlab.dashboard`), on a free port, over a
temporary TRAINLAB_HOME; shared by the dashboard and browser tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ui_command(port: int) -> list[str]:
    return [sys.executable, "-m", "trainlab.dashboard", "--port", str(port)]


def ui_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["TRAINLAB_HOME"] = str(home)
    return env


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def running_dashboard(home: Path, timeout: float = 180) -> Iterator[tuple[str, str]]:
    """Start the dashboard; yield (url, what it printed first); stop it and its workers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = home / f"dashboard-{port}.log"
    with log.open("w") as out:
        # Its own process group: the server's workers stop with it.
        server = subprocess.Popen(
            ui_command(port),
            env=ui_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while not healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, log.read_text()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
