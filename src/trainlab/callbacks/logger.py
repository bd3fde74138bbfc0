"""`RecorderLogger`: Lightning's Logger interface to the run, so that whatever a LightningModule
logs with `self.log` (trainlab's own module or one it did not write) reaches the run with the step
Lightning gives it, as its own MLFlowLogger records them: per-step values at the step's index
(every `trainer.log_every_n_steps` steps), epoch values at the epoch's last step.

It writes through the same connection as the run's rows (tracking/run.py: handed to the recorder
process in batches, never waiting on the store). Names the rows record themselves (`train/loss`,
`train/lr`, `val/loss`, ...) are not recorded twice: a module's own epoch value of such a name is
kept under Lightning's suffix (`train/loss_epoch`), and `epoch` once per step. Hyperparameters a module saves
(`save_hyperparameters()`) become params under `hparams.`.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Iterable, Mapping
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from trainlab.config.flat import flatten
from trainlab.engines.base import RunHandle

PARAMS_PREFIX = "hparams."
VAL_KEY = "val/loss"  # recorded by the rows after each validation: the module's own value


class RecorderLogger(Logger):
    def __init__(self, run: RunHandle, recorded_elsewhere: Iterable[str] = ()) -> None:
        super().__init__()
        self.run = run
        self.recorded_elsewhere = frozenset(recorded_elsewhere)
        # Set by EpochEnds from a training epoch's end to the next one's start: what is logged
        # then is an epoch's value, never the same as a row's per-step value of that name.
        self.at_epoch_end = False
        self.epoch_logged_at: int | None = None  # Lightning adds `epoch` to every call

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
        step = int(step or 0)
        names, values = [], []
        for key, value in metrics.items():
            if key in self.recorded_elsewhere:
                if not self.at_epoch_end or key == VAL_KEY:
                    continue  # the row holds the same value
                key = f"{key}_epoch"  # a module's own epoch value, under Lightning's suffix
            elif key == "epoch":
                if self.epoch_logged_at == step:
                    continue
                self.epoch_logged_at = step
            names.append(key)
            values.append(float(value))
        if names:
            self.run.add(names, values, step)

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


class EpochEnds(Callback):
    """Tells the run's RecorderLogger when a training epoch's values are being logged."""

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._mark(trainer, False)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._mark(trainer, True)

    def _mark(self, trainer: Trainer, at_epoch_end: bool) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, RecorderLogger):
                logger.at_epoch_end = at_epoch_end
