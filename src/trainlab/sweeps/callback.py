"""Hydra multirun sweeps as one MLflow parent run with one child run per job.

`SweepCallback` (hydra.callbacks in conf/train.yaml) runs in the launching process. Before the
first job it finds which sweep this is (sweeps/identity.py: the same command continues a sweep
that did not end, in its folder, with its parent run), checks every job's config (no job starts
when one cannot work) and an Optuna search's settings and study, starts the recorder that hosts
the parent run and the runs of every job on this machine, and writes the sweep file the jobs
read (sweeps/state.py). After the last job it has the recorder write the summary on the parent
and prints it. The launching process imports neither torch nor MLflow: with a parallel launcher
it trains nothing and its jobs start at once.
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
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.trainlab_launcher.fork_launcher import device_slices
from trainlab import collector
from trainlab.config.checks import check_config
from trainlab.data.file_checks import check_source
from trainlab.errors import ConfigError, one_line
from trainlab.signals import Interrupted, in_main_thread
from trainlab.sweeps.identity import (
    SweepRecord,
    child_defaults,
    claim,
    expand_replicates,
    release,
    started,
    sweep_key,
    unfinished_sweep,
    use_sweep_dir,
)
from trainlab.sweeps.open_parent import start_sweep
from trainlab.sweeps.state import STOP_FILE, Sweep, sweep_jobs
from trainlab.sweeps.trials import StudyLink
from trainlab.tracking.messages import Reply, SweepEnd, SweepOutcome
from trainlab.tracking.recorders import shared_recorder

# What forked workers (`hydra/launcher=parallel`) should find imported: a job needs them.
FORKED_WORKERS_INHERIT = ("torch", "lightning")

# trainlab's Optuna sweeper (src/hydra_plugins/trainlab_sweeper).
OPTUNA_SWEEPER = "hydra_plugins.trainlab_sweeper.optuna_sweeper.OptunaSweeper"

# The sweep this process opened and has not ended yet, and what it came to; cli.main() reads
# both (Hydra turns a callback's exceptions into warnings).
_open: Sweep | None = None
_record: SweepRecord | None = None
_lock: int | None = None  # this sweep's lock (identity.claim), held until it ends
_problem: str | None = None
_previous_sigterm: Any = None


class SweepCallback(Callback):
    """Creates the parent run before the first job and writes its summary after the last."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _open, _problem, _record, _lock
        _problem = None
        try:
            key = sweep_key(config)  # the command as given, before replicates expand it
            if forks_workers(config):
                try:
                    device_slices(int(config.hydra.launcher.get("gpus_per_job", 0)))
                except ValueError as err:
                    raise ConfigError(str(err)) from None
            explicit = OmegaConf.select(config, "sweep.resume")
            expand_replicates(config)
            child_defaults(config)
            check_jobs(config)
            if is_search(config):
                # Optuna's import only for a search: the plan's checks and its study's tables.
                from trainlab.sweeps.plan import check_search

                check_search(config)
            release(_lock)
            _lock = claim(key)  # after the checks: a bad command leaves nothing behind
            previous = None if explicit else unfinished_sweep(key)
            if previous is not None:
                use_sweep_dir(config, previous.sweep_dir)
                print(f"Continuing the sweep in {previous.sweep_dir} (it ended {previous.state})")
            if OmegaConf.select(config, "tracking.enabled", default=False):
                _open = start_sweep(config, key, previous is not None, explicit)
                stop_on_sigterm()
            elif explicit:
                raise ConfigError(
                    f"sweep.resume={explicit}: a parent run is continued in the store; expected "
                    "tracking enabled (an untracked sweep continues by running the same command)"
                )
            if is_search(config) and config.hydra.sweeper.study_name is None:
                # A continued sweep goes on with its own study (`sweep.resume=<id>` of another
                # command's sweep too); a new one, the same command after a sweep that ended
                # included, gets a new study, or it would find every trial ended and run none.
                continuing = previous is not None or explicit
                link = StudyLink.load(config.hydra.sweep.dir) if continuing else None
                with read_write(config.hydra), open_dict(config.hydra):
                    config.hydra.sweeper.study_name = (
                        link.study_name if link else f"trainlab-{key}-{uuid.uuid4().hex[:8]}"
                    )
            _record = started(key, str(Path(config.hydra.sweep.dir).resolve()))
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
            ended("FINISHED")
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
        # Jobs that were killed (their process died) leave the sweep to be continued.
        ended("FAILED" if outcome.problem else "KILLED" if outcome.killed else "FINISHED")
        print(outcome.summary)
        if outcome.warning:
            print(f"trainlab-train: warning: {outcome.warning}", file=sys.stderr)
        _problem = outcome.problem


def is_search(config: DictConfig) -> bool:
    return str(config.hydra.sweeper.get("_target_", "")) == OPTUNA_SWEEPER


def ended(state: str) -> None:
    """How the sweep ended, for the next command with its key (sweeps/identity.py)."""
    global _record, _lock
    record, _record = _record, None
    if record is not None:
        record.ended(state)
    release(_lock)  # after the record: the next command reads how this one ended
    _lock = None


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


def end_sweep(sweep: Sweep, end: SweepEnd) -> SweepOutcome:
    return shared_recorder(sweep.recorder_address).send(end, sweep.token, Reply.HANDLED)


def end_unfinished_sweep(err: BaseException) -> None:
    """A sweep that raised (bad override, launcher error, Ctrl-C) never leaves its parent RUNNING."""
    global _open
    restore_sigterm()
    sweep, _open = _open, None
    interrupted = isinstance(err, KeyboardInterrupt | SystemExit)
    ended("KILLED" if interrupted else "FAILED")
    if sweep is None:
        return
    error = None if interrupted else one_line(err)
    end_sweep(sweep, SweepEnd(stopped=None, error=error, interrupted=interrupted))


def sweep_problem() -> str | None:
    """Why the sweep that just ended should exit non-zero (every job failed, or it stopped);
    read once, so that a later command in the same process (a single run) does not inherit it."""
    global _problem
    problem, _problem = _problem, None
    return problem


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
