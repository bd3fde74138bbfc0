"""`RecorderLogger`: Lightning's Logger interface to the run, so that whatever a LightningModule
logs with `self.log` (trainlab's own module or one it did not write) reaches the run with the step
Lightning gives it, as its own MLFlowLogger records them: per-step values at the step's index
(every `trainer.log_every_n_steps` steps), epoch values at the epoch's last step.

It writes through the same connection as the run's rows (tracking/run.py: handed to the recorder
process in batches, never waiting on the store). Names the rows record themselves (`train/loss`,
`train/lr`, `val/loss`, ...) are not recorded twice. Hyperparameters a module saves
(`save_hyperparameters()`) become params under `hparams.`.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Iterable, Mapping
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from trainlab.config.flat import flatten
from trainlab.engines.base import RunHandle

PARAMS_PREFIX = "hparams."


class RecorderLogger(Logger):
    def __init__(self, run: RunHandle, recorded_elsewhere: Iterable[str] = ()) -> None:
        super().__init__()
        self.run = run
        self.recorded_elsewhere = frozenset(recorded_elsewhere)

    @property
    def name(self) -> str:
        return "trainlab"

    @property
    def version(self) -> str:
        return self.run.run_id

    @property
    def experiment(self) -> RunHandle:
        """The run, as MLFlowLogger's `experiment` is its client."""
        return self.run

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        keys = [key for key in metrics if key not in self.recorded_elsewhere]
        if keys:
            self.run.add(keys, [float(metrics[key]) for key in keys], int(step or 0))

    @rank_zero_only
    def log_hyperparams(
        self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any
    ) -> None:
        values = vars(params) if isinstance(params, Namespace) else dict(params)
        if values:
            self.run.log_params({f"{PARAMS_PREFIX}{k}": v for k, v in flatten(values).items()})

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.run.flush()  # the pipeline ends the run itself, with its status and final records
