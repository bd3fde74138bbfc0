"""`StepRows`: every optimizer step's row to the run, for any LightningModule.

A row holds `train/loss` (the loss training_step returned for the step), `train/lr` (the rate the
step used), the parameters (`weight/<out>_<in>`, `bias/<out>`, or norms for large tensors), and
when they apply `ols/gap` and `train/grad_norm`; after each validation epoch `val/loss` (what the
module logged as `val/loss`). Step = the step's index (Lightning's global step before it).

Rows are handed to the run (tracking/run.py) and go to the recorder process in batches: the loop
never waits on the store. What a step costs is in measures/trajectory.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightning as L
import torch

from trainlab.callbacks.logger import EpochEnds
from trainlab.callbacks.step_loss import StepLoss
from trainlab.engines.base import RunHandle
from trainlab.measures.references import OLS_GAP, OPTIMUM_GAP
from trainlab.measures.trajectory import (
    GRAD_NORM_KEY,
    LOSS_KEY,
    LR_KEY,
    RowSpec,
    gradient_norm,
    row_keys,
    step_row,
)

if TYPE_CHECKING:
    from trainlab.engines.base import FitContext

VAL_KEY = "val/loss"
# Names a row records: a module's own self.log of them is not recorded a second time.
ROW_METRICS = frozenset({LOSS_KEY, LR_KEY, VAL_KEY, OLS_GAP, OPTIMUM_GAP, GRAD_NORM_KEY})


class StepRows(EpochEnds):
    """The rows, and (as an EpochEnds) the logger's epoch marks: Lightning calls every hook of
    every callback at every step, so the run's two per-step watchers are one callback."""

    @classmethod
    def for_run(cls, fit: FitContext) -> StepRows | None:
        """The rows of a tracked run (None for an untracked one: there is nowhere to send them)."""
        if fit.run is None:
            return None
        return cls(fit.run, fit.rows)

    def __init__(self, run: RunHandle, spec: RowSpec | None = None) -> None:
        self.run = run
        self.spec = spec or RowSpec(norms_per_tensor=True)  # a module of its own: any model
        self.with_grad_norm = self.spec.grad_norm
        self.keys: tuple[str, ...] = ()
        # The module's parameters, listed once a fit: the optimizer updates them in place, and
        # walking the module tree for them at every step cost more than the row itself.
        self.params: list[torch.Tensor] = []
        self.loss = StepLoss()
        self.lr = float("nan")  # the rate the last optimizer step used
        self.lr_hook: Any = None
        self.grad_norm: torch.Tensor | None = None
        self.last_row: Any = None
        self.last_batch = -1  # batch_idx of the last batch trained in this epoch

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.keys = tuple(row_keys(pl_module, self.spec))
        self.params = list(pl_module.parameters())
        self.loss.start(trainer)
        # Read as the optimizer steps: an epoch's scheduler step comes before the epoch's last
        # on_train_batch_end, which would see the next epoch's rate (a torch hook: one call a step).
        if trainer.optimizers and self.lr_hook is None:
            self.lr_hook = trainer.optimizers[0].register_step_pre_hook(self._read_lr)

    def _read_lr(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.lr = optimizer.param_groups[0]["lr"]

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        # Before clipping, which compares this norm with its threshold.
        if self.with_grad_norm:
            self.grad_norm = gradient_norm(self.params)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self.last_batch = batch_idx
        loss = self.loss.after_batch(trainer, outputs)
        if loss is None or not trainer.is_global_zero:
            return
        norm = self.grad_norm if self.with_grad_norm else None
        row = step_row(loss, self.lr, self.params, self.spec, norm)
        self.last_row = row
        self.run.add(self.keys, row, trainer.global_step - 1)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        if self.last_batch + 1 < trainer.num_training_batches:
            # Lightning validates once more when a fit stops inside an epoch; a resumed run
            # validates at this epoch's real end, so this one is not part of the history.
            return
        value = trainer.callback_metrics.get(VAL_KEY)
        if value is not None:
            step = max(trainer.global_step - 1, 0)
            self.run.add([VAL_KEY], value.detach().reshape(1).double(), step)

    def value(self, key: str) -> float | None:
        """The last row's value of `key` (what a checkpoint is ranked by), or None."""
        if self.last_row is None or key not in self.keys:
            return None
        return float(self.last_row[self.keys.index(key)])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_lr_hook()
        if trainer.is_global_zero:
            # Handed over here too: under ddp_spawn this callback is a copy in another process,
            # whose rows the pipeline's own final flush cannot reach.
            self.run.flush()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._remove_lr_hook()
        if trainer.is_global_zero:
            self.run.flush()  # the rows up to the failing step belong to the run's history

    def _remove_lr_hook(self) -> None:
        if self.lr_hook is not None:
            self.lr_hook.remove()
            self.lr_hook = None
