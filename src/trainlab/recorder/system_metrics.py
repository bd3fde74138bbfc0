"""A run's `system/...` metrics: sampled by MLflow's own `SystemMetricsMonitor`, in the recorder.

MLflow starts its sampler only inside the fluent `mlflow.start_run`, which the recorder cannot
use (it records several runs at once, with `MlflowClient`); this module starts and stops the same
sampler per run, as `start_run`/`end_run` do. It samples this machine (CPU, memory, disk,
network; NVIDIA GPUs through nvidia-ml-py when a driver answers) on a thread of the recorder,
never in the trainer, and writes `system/<name>` at steps 0, 1, 2 ...

MLflow writes a sample only once a whole interval has passed, so a run shorter than the interval
would get none: when the run ends, one last sample covers the time since the previous one (CPU
utilization is measured between two samples); it is written with the run's final metrics.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from mlflow.entities import Metric


def prime() -> None:
    """Import the sampler, and give psutil its first CPU reading: utilization is measured between
    two readings, and a process's very first one has nothing before it (it says 0.0)."""
    import psutil
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # noqa: F401

    psutil.cpu_percent()


def start_sampling(run_id: str, uri: str, seconds: float, resumed: bool) -> Any:
    """MLflow's sampler for the run, started; raises ImportError without psutil."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    sampler = SystemMetricsMonitor(
        run_id, sampling_interval=seconds, resume_logging=resumed, tracking_uri=uri
    )
    sampler.start()
    return sampler


# Samplers being stopped in the background (by id), since their run's fit ended.
_stopping: dict[int, threading.Thread] = {}


def stop_early(sampler: Any) -> None:
    """Stop the sampler's thread now (the run's fit is over), in the background: it wakes, reads
    the run once more and exits, which the run's end would otherwise wait for; `stop_sampling`
    still takes the last sample, then."""
    if sampler is not None and id(sampler) not in _stopping:
        _stopping[id(sampler)] = thread = threading.Thread(target=sampler.finish, daemon=True)
        thread.start()


def stop_sampling(sampler: Any) -> list[Metric]:
    """Stop sampling (what it had queued is written); the last sample, as MLflow would log it,
    for the caller to write with the run's final metrics (one transaction fewer at its end)."""
    early = _stopping.pop(id(sampler), None)
    if early is not None:
        early.join()
    sampler.finish()  # returns at once once stopped
    sampler.collect_metrics()
    last = LastSample()
    sampler.mlflow_logger = last  # the sampler's batch logger is done: it flushed in finish()
    sampler.publish_metrics(sampler.aggregate_metrics())
    return last.metrics


class LastSample:
    """In place of the sampler's batch logger for its last sample: the metrics it is given
    (named and numbered by the sampler), kept instead of logged."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def record_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        self.metrics += [Metric(k, v, now, step or 0) for k, v in metrics.items()]
