"""Hydra multirun sweeps as one MLflow parent run with one child run per job.

`SweepCallback` (hydra.callbacks in conf/train.yaml) runs in the launching process. Before the
first job it checks every job's config (no job starts when one cannot work), starts the recorder
that hosts the parent run and the runs of every job on this machine, and writes the sweep file
the jobs read (sweeps/state.py). After the last job it has the recorder write the summary on the
parent and prints it. The launching process imports neither torch nor MLflow: with a parallel
launcher it trains nothing and its jobs start at once.
"""

from __future__ import annotations

import importlib
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from trainlab import collector
from trainlab.config.checks import check_config
from trainlab.config.flat import flatten
from trainlab.data.checks import check_source
from trainlab.errors import ConfigError, one_line
from trainlab.paths import default_artifact_root, tracking_uri
from trainlab.signals import Interrupted, in_main_thread
from trainlab.sweeps.state import STOP_FILE, Sweep, sweep_jobs, swept_keys
from trainlab.tracking.client import private_recorder, shared_recorder, warm_for
from trainlab.tracking.liveness import process_tags
from trainlab.tracking.messages import Reply, SweepEnd, SweepOutcome, SweepSpec
from trainlab.tracking.source import git_commit
from trainlab.tracking.store import absolute_uri, check_store, sqlite_path

# Launchers whose jobs run on this machine: they hand their runs to this process's recorder.
# Others (SLURM ...) may run jobs elsewhere: the parent run's id goes into the sweep file first.
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher", "LocalLauncher", "ForkLauncher")

# What forked workers (`hydra/launcher=parallel`) should find imported: a job needs them.
FORKED_WORKERS_INHERIT = ("torch", "lightning")

# The sweep this process opened and has not ended yet, and what it came to; cli.main() reads
# both (Hydra turns a callback's exceptions into warnings).
_open: Sweep | None = None
_problem: str | None = None
_previous_sigterm: Any = None


class SweepCallback(Callback):
    """Creates the parent run before the first job and writes its summary after the last."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _open, _problem
        _problem = None
        try:
            check_jobs(config)
            if OmegaConf.select(config, "tracking.enabled", default=False):
                _open = start_sweep(config)
                stop_on_sigterm()
            if forks_workers(config):
                # Imported once here, while the recorder starts: each forked worker has them,
                # frozen out of the collector's walks (trainlab/collector.py).
                with collector.paused():
                    for heavy in FORKED_WORKERS_INHERIT:
                        importlib.import_module(heavy)
        except Exception as err:
            # Hydra turns a callback's exception into a warning and would start every job
            # anyway: stop here the way trainlab-train stops on any error, with one line.
            print(f"trainlab-train: error: {one_line(err)}", file=sys.stderr)
            raise SystemExit(2) from err

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _open, _problem
        restore_sigterm()
        sweep, _open = _open, None
        if sweep is None:
            return
        stop_file = Path(sweep.sweep_dir, STOP_FILE)
        stopped = stop_file.read_text().strip() if stop_file.is_file() else None
        try:
            outcome = end_sweep(sweep, SweepEnd(stopped=stopped))
        except Exception as err:  # Hydra would only warn; the command must not exit 0
            _problem = f"the sweep's summary failed: {one_line(err)}"
            return
        sweep.parent_run_id = outcome.parent_run_id  # in the folder too, for whoever looks
        sweep.save()
        print(outcome.summary)
        if outcome.warning:
            print(f"trainlab-train: warning: {outcome.warning}", file=sys.stderr)
        _problem = outcome.problem


def forks_workers(config: DictConfig) -> bool:
    """True for trainlab's `parallel` launcher (src/hydra_plugins/trainlab_launcher)."""
    return str(config.hydra.launcher.get("_target_", "")).endswith(".ForkLauncher")


def stop_on_sigterm() -> None:
    """SIGTERM while the launcher waits for its jobs (submitit, joblib, SLURM) ends the sweep as
    Ctrl-C does: an exception that reaches train.main, which ends the parent run KILLED. Python's
    default would end this process on the spot and leave the parent to its recorder, if that
    still lives. (A job the basic launcher runs in this process has its own handler meanwhile.)"""
    global _previous_sigterm
    if in_main_thread():
        _previous_sigterm = signal.signal(signal.SIGTERM, _terminated)


def restore_sigterm() -> None:
    global _previous_sigterm
    if _previous_sigterm is not None and in_main_thread():
        signal.signal(signal.SIGTERM, _previous_sigterm)
    _previous_sigterm = None


def _terminated(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Interrupted(signum)


def check_jobs(config: DictConfig) -> None:
    """Compose every job and run the value checks before the first job starts.

    Hydra's sweepers compose each job only when they launch it, and the value checks
    (__post_init__) would only run inside each job: `optimizer.lr=0.1,-1` would start the first
    job and fail the second.
    """
    loader = GlobalHydra.instance().config_loader()
    for overrides in sweep_jobs(config):
        try:
            cfg = loader.load_sweep_config(master_config=config, sweep_overrides=overrides)
            with open_dict(cfg):
                del cfg["hydra"]
            check_source(check_config(cfg).data)
        except Exception as err:
            raise ConfigError(f"sweep job `{' '.join(overrides)}`: {one_line(err)}") from None


def start_sweep(config: DictConfig) -> Sweep:
    """Start the recorder that hosts the parent run; write the sweep file the jobs read."""
    uri = absolute_uri(config.tracking.uri or tracking_uri())
    check_store(uri)
    sweep_dir = Path(config.hydra.sweep.dir).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    recorder = private_recorder(uri, warm_for(config.tracking))
    address = recorder.address
    local = config.hydra.launcher._target_.rsplit(".", 1)[-1] in LOCAL_LAUNCHERS
    preset = config.hydra.runtime.choices.get("experiment") or "grid"
    sweep = Sweep(
        token=uuid.uuid4().hex,
        tracking_uri=uri,
        experiment_name=config.experiment_name,
        sweep_dir=str(sweep_dir),
        artifact_root=str(default_artifact_root()) if sqlite_path(uri) else None,
        recorder_host=address.host,
        recorder_path=address.path,
        recorder_key=address.authkey.hex(),
        swept_keys=swept_keys(config),
    )
    sweeper_params = OmegaConf.to_container(config.hydra.sweeper.params or OmegaConf.create())
    tags = {
        "mlflow.source.name": "trainlab-train -m",
        "trainlab.sweep": "parent",
        "trainlab.sweep.dir": str(sweep_dir),
        "trainlab.sweep.sweeper": config.hydra.sweeper._target_,
        "trainlab.sweep.launcher": config.hydra.launcher._target_,
        "trainlab.preset": preset,
        **process_tags(),  # the main process: whether the sweep is still alive (liveness.py)
    }
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    params = {
        "sweep.overrides": " ".join(config.hydra.overrides.task),
        "sweep.dir": str(sweep_dir),
        **flatten({"sweep.params": sweeper_params}),
    }
    spec = SweepSpec(
        uri=uri,
        experiment_name=sweep.experiment_name,
        run_name=f"sweep {preset} {sweep_dir.name}",
        tags=tags,
        params={k: str(v) for k, v in params.items()},
        sweep_dir=str(sweep_dir),
        swept_keys=tuple(sweep.swept_keys),
        artifact_root=sweep.artifact_root,
    )
    # Jobs on this machine find the parent through the recorder, so nothing waits for MLflow
    # here; jobs elsewhere need its id in the file before they start.
    sweep.save()
    reply = None if local else Reply.HANDLED
    sweep.parent_run_id = recorder.send(spec, sweep.token, reply)
    if sweep.parent_run_id is not None:
        sweep.save()
    print(f"Sweep of {len(sweep_jobs(config))} jobs, folder {sweep_dir}")
    return sweep


def end_sweep(sweep: Sweep, end: SweepEnd) -> SweepOutcome:
    return shared_recorder(sweep.recorder_address).send(end, sweep.token, Reply.HANDLED)


def end_unfinished_sweep(err: BaseException) -> None:
    """A sweep that raised (bad override, launcher error, Ctrl-C) never leaves its parent RUNNING."""
    global _open
    restore_sigterm()
    sweep, _open = _open, None
    if sweep is None:
        return
    interrupted = isinstance(err, KeyboardInterrupt | SystemExit)
    error = None if interrupted else one_line(err)
    end_sweep(sweep, SweepEnd(stopped=None, error=error, interrupted=interrupted))


def sweep_problem() -> str | None:
    """Why the sweep that just ended should exit non-zero (every job failed, or it stopped)."""
    return _problem


def run_job(task: Callable[[DictConfig], float], cfg: DictConfig) -> float:
    """One job of a multirun: a failure is printed (the pipeline records it) and returns NaN so
    that the sweep goes on; with sweep.stop_on_failure the jobs after it are skipped."""
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
        if OmegaConf.select(cfg, "sweep.stop_on_failure", default=False):
            stop_file.write_text(f"the sweep stopped after {line}\n")
        return float("nan")
