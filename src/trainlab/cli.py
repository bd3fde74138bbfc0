"""`trainlab-train`: Hydra's command line around one job (trainlab/job.py) or a sweep of them.

trainlab-train experiment=seed_pipeline optimizer=adam optimizer.lr=0.05

Only what a command line needs lives here: the traceback switch (the user's HYDRA_FULL_ERROR),
exit statuses (2 for an error, 128 + N for a signal), `rerun=<id>` shorthand, absolute paths in
the environment of the processes a run starts, and the exit itself: `os._exit` once everything
the command owes is durable, since Python's own shutdown, unloading torch, Lightning and
friends, is time that nobody waits for (process.py).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

import hydra
import psutil
from omegaconf import DictConfig

from trainlab.config.schema import register_configs
from trainlab.errors import ConfigError, is_user_error, one_line
from trainlab.job import run_one
from trainlab.paths import CONFIG_DIR, home, in_multirun, unwritable_reason
from trainlab.process import exit_now
from trainlab.sweeps.callback import end_unfinished_sweep, run_job, sweep_problem
from trainlab.sweeps.state import current_job
from trainlab.tracking.store_checks import absolute_uri

PROG = "trainlab-train"
register_configs()

# Set by main() from the user's own HYDRA_FULL_ERROR before it sets the variable for Hydra.
_show_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"


def report(err: BaseException) -> int:
    """Print the error as one line on stderr; the exit status (2)."""
    hint = "" if is_user_error(err) else " (HYDRA_FULL_ERROR=1 shows the traceback)"
    print(f"{PROG}: error: {one_line(err)}{hint}", file=sys.stderr)
    return 2


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def hydra_entry(cfg: DictConfig) -> float:
    if in_multirun():
        # A failing job is recorded and the sweep goes on (sweep.stop_on_failure stops it).
        job = current_job()
        return run_job(lambda c: run_one(c, job), cfg)
    try:
        return run_one(cfg, None)
    except Exception as err:
        # Reported here, not by Hydra, which would add its own "Error executing job" line;
        # SystemExit, not an Exception, so that Hydra lets it through.
        if _show_traceback:
            raise
        raise SystemExit(report(err)) from None


def main() -> int:
    """Hydra's CLI, with every error shown as one line; returns the exit status."""
    global _show_traceback
    _show_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    # Hydra prints its own multi-line report of composition errors unless HYDRA_FULL_ERROR is
    # set; with it set the exception reaches us and becomes one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    absolute_environment()
    try:
        # Hydra writes its job folder under TRAINLAB_HOME first; say so plainly if it cannot.
        reason = unwritable_reason(home())
        if reason is not None:
            raise ConfigError(
                f"TRAINLAB_HOME={str(home())!r}: cannot write there ({reason}); expected a "
                "writable folder for mlflow.db, mlartifacts/ and outputs/"
            )
        sys.argv[1:] = expand_shorthands(sys.argv[1:])
        hydra_entry()
    except BaseException as err:
        end_unfinished_sweep(err)  # a sweep that raised never leaves its parent run RUNNING
        if isinstance(err, KeyboardInterrupt):
            # The run is already KILLED and the resume hint printed; 130 for Ctrl-C, 143 for
            # SIGTERM.
            return 128 + getattr(err, "signum", 2)
        if isinstance(err, SystemExit):
            return err.code if isinstance(err.code, int) else 1
        if _show_traceback:
            raise
        return report(err)
    problem = sweep_problem()
    return report(ConfigError(problem)) if problem else 0


def expand_shorthands(args: list[str]) -> list[str]:
    """`rerun=<run id>` is short for `rerun.run=<run id>` (beside `rerun.verify=true`)."""
    return [f"rerun.run={a[len('rerun=') :]}" if a.startswith("rerun=") else a for a in args]


def absolute_environment() -> None:
    """TRAINLAB_HOME and a sqlite MLFLOW_TRACKING_URI given relative to this folder, made
    absolute for the processes this one starts (sweep jobs, DDP ranks, recorders), which may
    run from another folder (submitit starts its jobs in the sweep's folder)."""
    if os.environ.get("TRAINLAB_HOME"):
        os.environ["TRAINLAB_HOME"] = str(home())
    if os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = absolute_uri(os.environ["MLFLOW_TRACKING_URI"])


def cli() -> NoReturn:
    """The console script: main(), then exit without unloading the libraries (everything the
    run owes is durable once main() returns: the recorder answered for it)."""
    status = main()
    if has_joblib_workers():
        # A parallel sweep's main process (light: no torch, no MLflow): exit normally, so that
        # joblib's exit handler stops its idle worker processes instead of orphaning them.
        logging.shutdown()  # the job's log file
        sys.exit(status)
    exit_now(status)


def has_joblib_workers() -> bool:
    """Whether joblib's loky workers run under this process (scikit-learn imports loky in
    any run; only a joblib sweep's main process starts workers)."""
    if "joblib.externals.loky" not in sys.modules:
        return False
    try:
        children = psutil.Process().children()
        return any("loky" in " ".join(child.cmdline()) for child in children)
    except psutil.Error:
        return True  # unsure: the normal exit stops them, only slower


if __name__ == "__main__":
    cli()
