"""One MLflow run per job: its lifecycle, a buffered metric sink, and the Lightning callback.

Why not Lightning's MLFlowLogger: it sends one request per `log_metrics` call, ~5 ms per step on
SQLite against ~0.1 ms of training. Here each step's values stay on the device in one small
tensor; they are copied to the host and sent with `log_batch` (<= 1000 metrics a request) when
the buffer is full, when `flush_every_seconds` have passed, and whenever the run ends.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from trainlab.paths import PROJECT_ROOT, default_artifact_root, unwritable_reason
from trainlab.schema import ConfigError

MAX_METRICS_PER_REQUEST = 1000
MAX_PARAMS_PER_REQUEST = 100
MAX_PARAM_VALUE_CHARS = 6000


class MetricSink:
    """Buffers metric rows (a step and a tensor of values for fixed keys) and sends them in order."""

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        max_metrics: int = MAX_METRICS_PER_REQUEST,
        max_seconds: float = 10.0,
    ) -> None:
        self.client, self.run_id = client, run_id
        self.max_metrics, self.max_seconds = max_metrics, max_seconds
        self._rows: list[tuple[Sequence[str], int, int, Any]] = []  # keys, step, ms, values
        self._pending = 0
        self._last_flush = time.monotonic()
        self.sent = 0

    def add(self, keys: Sequence[str], values: torch.Tensor | Sequence[float], step: int) -> None:
        """Queue one value per key at `step`; a tensor is kept on its device until the flush."""
        self._rows.append((keys, step, int(time.time() * 1000), values))
        self._pending += len(keys)
        if (
            self._pending >= self.max_metrics
            or time.monotonic() - self._last_flush > self.max_seconds
        ):
            self.flush()

    def flush(self) -> None:
        rows, self._rows, self._pending = self._rows, [], 0
        self._last_flush = time.monotonic()
        if not rows:
            return
        tensors = [
            values.reshape(-1) for _, _, _, values in rows if isinstance(values, torch.Tensor)
        ]
        # One device-to-host copy for every buffered step.
        host = torch.cat(tensors).cpu().tolist() if tensors else []
        offset = 0
        metrics: list[Metric] = []
        for keys, step, ms, values in rows:
            if isinstance(values, torch.Tensor):
                values, offset = host[offset : offset + len(keys)], offset + len(keys)
            metrics.extend(Metric(k, float(v), ms, step) for k, v in zip(keys, values, strict=True))
        for start in range(0, len(metrics), MAX_METRICS_PER_REQUEST):
            self.client.log_batch(
                self.run_id, metrics=metrics[start : start + MAX_METRICS_PER_REQUEST]
            )
        self.sent += len(metrics)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'optimizer': {'lr': 0.1}} -> {'optimizer.lr': 0.1}; lists stay whole values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


@functools.cache  # one `git` subprocess per process, not one per sweep job
def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def check_server(uri: str) -> None:
    """Fail in seconds, with one line, when an http(s) tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5):
            pass
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(
            f"tracking.uri={uri!r}: no MLflow server answers ({reason}); start one "
            "(make ui / make server) or drop tracking.uri to use the embedded store"
        ) from None


# Stores MLflow can open; anything else fails in MLflow with a long message about model registries.
STORE_SCHEMES = ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql", "databricks")


def check_store(uri: str) -> None:
    """Fail in seconds, with one line, on a store that cannot work: an unknown scheme, a server
    that does not answer, or a SQLite file in a folder that cannot be written (MLflow would
    retry that for about two minutes)."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0] if ":" in uri else ""
    if scheme not in STORE_SCHEMES:
        raise ConfigError(
            f"tracking.uri={uri!r}: not a store MLflow can open; expected sqlite:///<abs path>, "
            "http(s)://host:port or another of " + ", ".join(STORE_SCHEMES)
        )
    check_server(uri)
    if scheme == "sqlite" and uri.startswith("sqlite:///") and ":memory:" not in uri:
        database = Path(uri[len("sqlite:///") :])
        reason = unwritable_reason(database.parent)
        if reason is None and database.exists() and not os.access(database, os.W_OK):
            reason = "the file is read-only"
        if reason is not None:
            raise ConfigError(
                f"tracking.uri={uri!r}: cannot write the store {database} ({reason}); expected "
                "a writable folder (set TRAINLAB_HOME, or tracking.uri=sqlite:////<path>/mlflow.db)"
            )


class MlflowRun:
    """The MLflow run of one job; use `open_run` to get one that always ends with a status."""

    def __init__(self, client: MlflowClient, run_id: str, max_seconds: float) -> None:
        self.client, self.run_id = client, run_id
        self.sink = MetricSink(client, run_id, max_seconds=max_seconds)

    def log_params(self, params: dict[str, Any]) -> None:
        items = [Param(k[:250], str(v)[:MAX_PARAM_VALUE_CHARS]) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_REQUEST):
            self.client.log_batch(self.run_id, params=items[start : start + MAX_PARAMS_PER_REQUEST])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self.sink.add(list(metrics), [float(v) for v in metrics.values()], step)

    def set_tags(self, tags: dict[str, Any]) -> None:
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self.client.log_batch(self.run_id, tags=items)

    def log_dict(self, dictionary: Any, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, dictionary, artifact_file)

    # A ddp_spawn job pickles its callbacks into every rank: the run travels as its URI and id
    # and gets a client of its own there (a store's connections do not cross processes).
    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.client.tracking_uri, "run_id": self.run_id, "s": self.sink.max_seconds}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(MlflowClient(tracking_uri=state["uri"]), state["run_id"], state["s"])


def safe_folder_name(name: str) -> str:
    """A user-given name as one folder name that cannot climb out of its parent."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".")
    return cleaned or "experiment"


def experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if client.tracking_uri.startswith("sqlite:"):
        # The embedded store keeps artifacts beside mlflow.db, never under the current folder.
        location = (default_artifact_root() / safe_folder_name(name)).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Parallel jobs of a sweep race to create it: the loser uses the winner's.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


@contextmanager
def open_run(
    uri: str,
    experiment_name: str,
    run_name: str | None,
    tags: dict[str, str],
    max_seconds: float,
    run_id: str | None = None,
) -> Iterator[MlflowRun]:
    """Create a run (or re-open `run_id`: RUNNING again, nothing new created); end it FINISHED,
    FAILED (exception) or KILLED (interrupt), sink flushed."""
    check_store(uri)
    client = MlflowClient(tracking_uri=uri)
    if run_id is None:
        exp_id = experiment_id(client, experiment_name)
        run_id = client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
    else:
        client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    tracked = MlflowRun(client, run_id, max_seconds)
    status = RunStatus.FINISHED
    try:
        yield tracked
    except (KeyboardInterrupt, SystemExit):
        status = RunStatus.KILLED
        raise
    except BaseException:
        status = RunStatus.FAILED
        raise
    finally:
        try:
            tracked.sink.flush()
        finally:
            client.set_terminated(tracked.run_id, RunStatus.to_string(status))


class TrackingCallback(L.Callback):
    """Sends train/loss and the parameter trajectory at every optimizer step, val/loss per epoch."""

    def __init__(
        self, run: MlflowRun, trajectory_limit: int, ols_loss: float | None = None
    ) -> None:
        self.run = run
        self.trajectory_limit = trajectory_limit
        self.ols_loss = ols_loss  # the least-squares optimum: adds ols/gap = train/loss - it
        self.keys: list[str] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.keys = ["train/loss", *parameter_keys(pl_module, self.trajectory_limit)]
        if self.ols_loss is not None:
            self.keys.append("ols/gap")

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if not trainer.is_global_zero:  # DDP: the other ranks hold the same weights
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        values = parameter_values(pl_module, self.trajectory_limit, loss, self.ols_loss)
        self.run.sink.add(self.keys, values, trainer.global_step - 1)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if trainer.sanity_checking or "val/loss" not in trainer.callback_metrics:
            return
        value = trainer.callback_metrics["val/loss"].detach().reshape(1)
        self.run.sink.add(["val/loss"], value, max(trainer.global_step - 1, 0))

    # Also sent here because under ddp_spawn this callback is a copy in another process, whose
    # buffer open_run's final flush cannot reach.
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.run.sink.flush()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if trainer.is_global_zero:
            self.run.sink.flush()


def parameter_keys(module: torch.nn.Module, limit: int) -> list[str]:
    """`weight/<out>_<in>` and `bias/<out>` for small models, their L2 norms for larger ones."""
    keys: list[str] = []
    for name, param in module.named_parameters():
        short = name.rsplit(".", 1)[-1]
        if param.numel() > limit:
            keys.append(f"{short}/norm")
        elif param.dim() == 2:
            keys += [
                f"{short}/{o}_{i}" for o in range(param.shape[0]) for i in range(param.shape[1])
            ]
        else:
            keys += [f"{short}/{o}" for o in range(param.numel())]
    return keys


def parameter_values(
    module: torch.nn.Module, limit: int, loss: torch.Tensor, ols_loss: float | None = None
) -> torch.Tensor:
    """The loss, the parameters (or their norms) and, with `ols_loss`, the gap to it: one
    detached float64 vector built on the device (no host sync), in `parameter_keys`' order."""
    loss = loss.detach().reshape(1).double()
    parts = [loss]
    for param in module.parameters():
        value = param.detach()
        parts.append(
            value.norm().reshape(1).double()
            if value.numel() > limit
            else value.reshape(-1).double()
        )
    if ols_loss is not None:
        parts.append(loss - ols_loss)
    return torch.cat(parts)
