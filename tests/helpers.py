"""Helpers shared by the tests: real `trainlab-train` subprocesses, the real entry in-process,
metric histories read back from MLflow, free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from trainlab import job

BIN = Path(sys.executable).parent
TRAIN = str(BIN / "trainlab-train")
PREDICT = str(BIN / "trainlab-predict")


def run_cli(
    *args: str,
    home: Path,
    cwd: Path | None = None,
    timeout: int = 180,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run `trainlab-train ARGS` as a user would, with the store under `home`."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")
    }
    env["TRAINLAB_HOME"] = str(home)
    env.update(extra_env or {})
    return subprocess.run(
        [TRAIN, *args], cwd=cwd or home, env=env, capture_output=True, text=True, timeout=timeout
    )


def start_cli(home: Path, *args: str, unbuffered: bool = False) -> subprocess.Popen:
    """Start `trainlab-train ARGS` in the background (to signal or kill it), store under `home`;
    `unbuffered`: its printed lines reach the pipe as they are printed (to follow its steps)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["TRAINLAB_HOME"] = str(home)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [TRAIN, *args], cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def until(what: str, check: Callable[[], Any], timeout: float = 180) -> Any:
    """check()'s first truthy value, polled until `timeout`; else the test fails naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def run_composed(cfg: DictConfig) -> float:
    """One job from a composed config, through the entry's own path (checks, recorder,
    pipeline), in this process: what `trainlab-train` does after Hydra has composed."""
    return job.run_one(cfg, None)


def store(home: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")


def all_runs(client: MlflowClient) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []


def history(client: MlflowClient, run_id: str, key: str = "train/loss") -> list[tuple[int, float]]:
    """[(step, value), ...] of one metric, in step order."""
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def histories(client: MlflowClient, run) -> dict[str, list[tuple[int, float]]]:
    """Every metric of a run as [(step, value), ...] in step order."""
    return {key: history(client, run.info.run_id, key) for key in run.data.metrics}


def free_port() -> int:
    """A port nothing listens on (bound and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def model_folder(home: Path, run_id: str) -> Path:
    """The folder of the model a run logged, in its home's artifact store."""
    (output,) = store(home).get_run(run_id).outputs.model_outputs
    (found,) = home.glob(f"mlartifacts/*/models/{output.model_id}/artifacts")
    return found
