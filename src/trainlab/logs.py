"""A quiet console: the seed's lines, the run id, the summary and warnings that matter.

Hydra's `job_logging` (conf/hydra/job_logging/trainlab.yaml) sends INFO to the job's log file and
only warnings to the console; this module silences what libraries print outside logging (their
harmless warnings) and pins the loggers that Lightning and MLflow configure themselves. The
recorder process (MLflow, SQLAlchemy: their errors come with 40-60 lines of traceback) writes its
standard error into the job's log file (`job_log_file`, tracking/recorders.py).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

# Lightning's INFO lines ("GPU available: False", "💡 Tip: ...") and MLflow's ("Creating initial
# MLflow database tables...") belong in the job's log file, not on the console.
LIBRARY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "mlflow", "alembic")
HARMLESS_WARNINGS = (
    ".*LeafSpec.*is deprecated.*",
    ".*does not have many workers.*",
    ".*`isinstance.treespec, LeafSpec.` is deprecated.*",
    # Printed by every run on a machine where SLURM is installed (a login node, CI): a run
    # started without srun there is an ordinary local run; SLURM jobs of the `slurm` launcher
    # do run under srun, and trainlab picks the DDP strategy itself (engines/distributed.py).
    ".*The `srun` command is available on your system but is not used.*",
    # lightning-hydra-template's pattern (a network in save_hyperparameters): its checkpoint
    # holds the network twice, which trainlab loads as data (checkpoints/trust.py).
    ".*is an instance of `nn.Module` and is already saved during checkpointing.*",
)


def quiet_libraries() -> None:
    """Library loggers at WARNING, harmless library warnings off (idempotent, cheap)."""
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def job_log_file() -> Path | None:
    """The file this process logs into (Hydra's job log, `<output dir>/train.log`), if any."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None
