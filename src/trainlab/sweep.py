"""Hydra multirun sweeps as one MLflow parent run with one child run per job.

`SweepCallback` (hydra.callbacks in conf/train.yaml) runs in the launching process:
on_multirun_start creates the store once (a fresh SQLite store opened by parallel jobs races while
creating its tables), the experiment and the parent run, and writes the parent's id to
`<sweep dir>/mlflow_sweep.yaml`. Every job reads that file, whatever the launcher (joblib workers,
submitit jobs on other machines that share the folder: environment variables may not reach them),
and tags its run `mlflow.parentRunId`. on_multirun_end reads the children back from MLflow and
writes the summary on the parent (sweep_report.py).

Imports of MLflow stay inside functions: Hydra builds the callback for every single run too.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from trainlab import paths
from trainlab.errors import one_line
from trainlab.schema import ConfigError

SWEEP_FILE = "mlflow_sweep.yaml"
STOP_FILE = "STOPPED"  # written by the job that stopped the sweep (sweep.stop_on_failure=true)
PARENT_TAG = "mlflow.parentRunId"
JOB_TAG = "trainlab.sweep.job"
OVERRIDES_TAG = "trainlab.sweep.overrides"
ERROR_TAG = "trainlab.error"


@dataclass
class Sweep:
    """What the launching process tells every job (saved as SWEEP_FILE in the sweep dir)."""

    parent_run_id: str
    tracking_uri: str
    experiment_id: str
    experiment_name: str
    sweep_dir: str
    swept_keys: list[str] = field(default_factory=list)

    def save(self) -> None:
        Path(self.sweep_dir, SWEEP_FILE).write_text(yaml.safe_dump(asdict(self), sort_keys=False))

    @classmethod
    def load(cls, sweep_dir: str | Path) -> Sweep | None:
        file = Path(sweep_dir, SWEEP_FILE)
        return cls(**yaml.safe_load(file.read_text())) if file.is_file() else None


def override_key(override: str) -> str:
    """`+tags.x=1` -> `tags.x`; `optimizer=adam` -> `optimizer`."""
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys(config: DictConfig) -> list[str]:
    """Keys the sweep varies: sweep overrides in hydra.sweeper.params and on the command line."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list(config.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(arguments)
    keys = [override_key(o.get_key_element()) for o in parsed if o.is_sweep_override()]
    return list(dict.fromkeys(keys))


# ------------------------------------------------------------------------- the job's side
@dataclass
class SweepJob:
    """One job of a tracked multirun: its sweep, number and overrides."""

    sweep: Sweep
    num: int
    overrides: list[str]

    def swept_overrides(self) -> list[str]:
        keys = set(self.sweep.swept_keys)
        return [o for o in self.overrides if override_key(o) in keys] or self.overrides

    def run_name(self) -> str:
        return " ".join(self.swept_overrides()) or f"job {self.num}"

    def tags(self) -> dict[str, str]:
        return {
            PARENT_TAG: self.sweep.parent_run_id,
            JOB_TAG: str(self.num),
            OVERRIDES_TAG: json.dumps(self.overrides),
        }


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def current_job() -> SweepJob | None:
    """The sweep this job belongs to; None outside a multirun or when the sweep is untracked."""
    if not in_multirun():
        return None
    hydra_cfg = HydraConfig.get()
    sweep = Sweep.load(hydra_cfg.sweep.dir)
    if sweep is None:
        return None
    return SweepJob(sweep, int(hydra_cfg.job.num), list(hydra_cfg.overrides.task))


def run_job(task: Callable[[DictConfig], float], cfg: DictConfig) -> float:
    """One job of a multirun: a failure is recorded and returns NaN so that the sweep goes on."""
    hydra_cfg = HydraConfig.get()
    stop_file = Path(hydra_cfg.sweep.dir, STOP_FILE)
    if stop_file.is_file():
        print(f"trainlab-train: job {hydra_cfg.job.num} skipped: {stop_file.read_text().strip()}")
        return float("nan")
    try:
        return task(cfg)
    except Exception as err:
        line = f"job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}): {one_line(err)}"
        print(f"trainlab-train: error: {line}", file=sys.stderr)
        job = current_job()
        if job is not None:
            record_failure(job, one_line(err), traceback.format_exc())
        if OmegaConf.select(cfg, "sweep.stop_on_failure", default=False):
            stop_file.write_text(f"the sweep stopped after {line}\n")
        return float("nan")


def record_failure(job: SweepJob, error: str, trace: str) -> None:
    """The job's child run ends FAILED with the error; a job that failed before its run existed
    (config, data, device) gets one, so that the summary lists every failure."""
    from mlflow.entities import RunStatus
    from mlflow.tracking import MlflowClient

    client = MlflowClient(job.sweep.tracking_uri)
    found = client.search_runs(
        [job.sweep.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{job.sweep.parent_run_id}' "
        f"and tags.`{JOB_TAG}` = '{job.num}'",
        max_results=1,
    )
    if found:
        run_id = found[0].info.run_id
    else:
        run_id = client.create_run(
            job.sweep.experiment_id, run_name=job.run_name(), tags=job.tags()
        ).info.run_id
    client.set_tag(run_id, ERROR_TAG, error[:5000])
    client.log_text(run_id, trace, "error.txt")
    if not found:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))


# ------------------------------------------------------------------ the launching side
# The parent run that this process opened and has not ended yet, and what the sweep came to;
# train.main() reads both (a callback's exceptions become warnings inside Hydra).
_open_parent: Sweep | None = None
_problem: str | None = None


class SweepCallback(Callback):
    """Creates the parent run before the first job and writes its summary after the last."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _open_parent, _problem
        _problem = None
        try:
            check_jobs(config)
            if OmegaConf.select(config, "tracking.enabled", default=False):
                _open_parent = start_parent(config)
        except Exception as err:
            # Hydra turns a callback's exception into a warning and would start every job
            # anyway: stop here the way trainlab-train stops on any error, with one line.
            print(f"trainlab-train: error: {one_line(err)}", file=sys.stderr)
            raise SystemExit(2) from err

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _open_parent, _problem
        sweep = Sweep.load(config.hydra.sweep.dir)
        if sweep is None:
            return
        from trainlab.sweep_report import finish_parent

        stop_file = Path(sweep.sweep_dir, STOP_FILE)
        stopped = stop_file.read_text().strip() if stop_file.is_file() else None
        try:
            _problem = finish_parent(sweep, stopped)
        except Exception as err:  # Hydra would only warn; the command must not exit 0
            _problem = f"the sweep's summary failed: {one_line(err)}"
            end_unfinished_parent(err)
        _open_parent = None


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The overrides of every job a grid over the sweep would run (Hydra's BasicSweeper's own
    expansion); a search's interval counts as a choice of its two ends."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    parser = OverridesParser.create()
    overrides = []
    for override in parser.parse_overrides(arguments):
        if override.is_interval_sweep():
            ends = override.value()
            override = parser.parse_override(
                f"{override.get_key_element()}={ends.start},{ends.end}"
            )
        overrides.append(override)
    return BasicSweeper.split_arguments(overrides, None)[0]


def check_jobs(config: DictConfig) -> None:
    """Compose every job and run the schemas' value checks before the first job starts.

    Hydra's BasicSweeper composes each job before launching (unknown keys and options), but the
    value checks (__post_init__) would only run inside each job: `optimizer.lr=0.1,-1` would start
    the first job and fail the second.
    """
    from trainlab.pipeline import check_config

    loader = GlobalHydra.instance().config_loader()
    for overrides in sweep_jobs(config):
        try:
            cfg = loader.load_sweep_config(master_config=config, sweep_overrides=overrides)
            with open_dict(cfg):
                del cfg["hydra"]
            check_config(cfg)
        except Exception as err:
            raise ConfigError(f"sweep job `{' '.join(overrides)}`: {one_line(err)}") from None


def start_parent(config: DictConfig) -> Sweep:
    from mlflow.tracking import MlflowClient

    from trainlab.tracking import check_server, experiment_id, flatten, git_commit

    uri = config.tracking.uri or paths.tracking_uri()
    check_server(uri)
    client = MlflowClient(tracking_uri=uri)
    exp_id = experiment_id(client, config.experiment_name)  # creates the store's tables, once
    sweep_dir = Path(config.hydra.sweep.dir).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    preset = config.hydra.runtime.choices.get("experiment") or "grid"
    tags = {
        "mlflow.source.name": "trainlab-train -m",
        "trainlab.sweep": "parent",
        "trainlab.sweep.dir": str(sweep_dir),
        "trainlab.sweep.sweeper": config.hydra.sweeper._target_,
        "trainlab.sweep.launcher": config.hydra.launcher._target_,
        "trainlab.preset": preset,
    }
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    run = client.create_run(exp_id, run_name=f"sweep {preset} {sweep_dir.name}", tags=tags)
    sweeper_params = OmegaConf.to_container(config.hydra.sweeper.params or OmegaConf.create())
    params = {
        "sweep.overrides": " ".join(config.hydra.overrides.task),
        "sweep.dir": str(sweep_dir),
        **flatten({"sweep.params": sweeper_params}),
    }
    client.log_batch(
        run.info.run_id,
        params=[_param(k, v) for k, v in params.items()],
    )
    sweep = Sweep(
        run.info.run_id, uri, exp_id, config.experiment_name, str(sweep_dir), swept_keys(config)
    )
    sweep.save()
    print(f"Sweep: parent MLflow run {run.info.run_id} ({run.info.run_name}), folder {sweep_dir}")
    return sweep


def _param(key: str, value: Any) -> Any:
    from mlflow.entities import Param

    return Param(key[:250], str(value)[:6000])


def end_unfinished_parent(err: BaseException) -> None:
    """A sweep that raised (bad override, launcher error, Ctrl-C) never leaves its parent RUNNING."""
    global _open_parent
    sweep, _open_parent = _open_parent, None
    if sweep is None:
        return
    from mlflow.entities import RunStatus
    from mlflow.tracking import MlflowClient

    client = MlflowClient(sweep.tracking_uri)
    interrupted = isinstance(err, KeyboardInterrupt | SystemExit)
    if not interrupted:
        client.set_tag(sweep.parent_run_id, ERROR_TAG, one_line(err)[:5000])
    status = RunStatus.KILLED if interrupted else RunStatus.FAILED
    client.set_terminated(sweep.parent_run_id, RunStatus.to_string(status))


def sweep_problem() -> str | None:
    """Why the sweep that just ended should exit non-zero (every job failed, or it stopped)."""
    return _problem
