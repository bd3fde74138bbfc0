"""`trainlab-train`: compose the config, build data and model, fit, track, report.

trainlab-train experiment=seed_pipeline optimizer=adam optimizer.lr=0.05
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import hydra
from omegaconf import DictConfig

from trainlab.errors import is_user_error, one_line
from trainlab.paths import CONFIG_DIR, home, unwritable_reason
from trainlab.schema import ConfigError, register_configs
from trainlab.sweep import end_unfinished_parent, in_multirun, run_job, sweep_problem

register_configs()


# Set by main() from the user's own HYDRA_FULL_ERROR before it sets the variable for Hydra.
_show_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"


def fail(err: BaseException) -> NoReturn:
    """Exit 2 with one line on stderr (or re-raise when the user asked for tracebacks)."""
    if _show_traceback:
        raise err
    hint = "" if is_user_error(err) else " (HYDRA_FULL_ERROR=1 shows the traceback)"
    print(f"trainlab-train: error: {one_line(err)}{hint}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def _hydra_entry(cfg: DictConfig) -> float:
    # Imported here so that `--help`, `--cfg job` and config errors stay fast.
    from trainlab.pipeline import run

    if in_multirun():
        # A failing job is recorded and the sweep goes on (sweep.stop_on_failure stops it).
        return run_job(run, cfg)
    try:
        return run(cfg)
    except Exception as err:
        # Handled here, not by Hydra, which would add its own "Error executing job" line.
        fail(err)


def main() -> None:
    """Console entry: Hydra's CLI, with every error shown as one line and exit status 2."""
    global _show_traceback
    _show_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    # Hydra prints its own multi-line report of composition errors unless HYDRA_FULL_ERROR is
    # set; with it set the exception reaches us and becomes one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        # Hydra writes its job folder under TRAINLAB_HOME first; say so plainly if it cannot.
        reason = unwritable_reason(home())
        if reason is not None:
            raise ConfigError(
                f"TRAINLAB_HOME={str(home())!r}: cannot write there ({reason}); expected a "
                "writable folder for mlflow.db, mlartifacts/ and outputs/"
            )
        _hydra_entry()
    except BaseException as err:
        end_unfinished_parent(err)  # a sweep that raised never leaves its parent run RUNNING
        if isinstance(err, KeyboardInterrupt):
            # The run is already KILLED and the resume hint printed; 130 for Ctrl-C, 143 for
            # SIGTERM.
            sys.exit(128 + getattr(err, "signum", 2))
        if not isinstance(err, Exception):
            raise
        fail(err)
    problem = sweep_problem()
    if problem:
        fail(ConfigError(problem))


if __name__ == "__main__":
    main()
