"""trainlab's Lightning callbacks: what watches a fit, for any LightningModule.

Listed by name in the config's `callbacks` (config/schema.py: trainlab_callbacks), beside any a
user adds; each `for_run` builds one for a run from its settings, or none when the run needs none.
"""

from trainlab.callbacks.commit_checkpoints import CommitCheckpoints
from trainlab.callbacks.early_stop import EarlyStop, EpochTrainLoss, early_stopping
from trainlab.callbacks.guard import DivergedError, DivergenceGuard
from trainlab.callbacks.logger import RecorderLogger
from trainlab.callbacks.progress import ConsoleProgress
from trainlab.callbacks.rows import StepRows
from trainlab.callbacks.study_reports import TrialReports

__all__ = [
    "CommitCheckpoints",
    "ConsoleProgress",
    "DivergedError",
    "DivergenceGuard",
    "EarlyStop",
    "EpochTrainLoss",
    "RecorderLogger",
    "StepRows",
    "TrialReports",
    "early_stopping",
]
