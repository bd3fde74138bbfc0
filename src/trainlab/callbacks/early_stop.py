"""Early stopping with Lightning's own `EarlyStopping`, and what trainlab adds around it.

`early_stop.patience` is Lightning's patience rule on `early_stop.monitor` (val/loss with a
validation split, else train/loss): stop after `patience` checks without an improvement of more
than `min_delta`. `early_stop.ols_gap` is Lightning's `stopping_threshold` on train/loss at the
least-squares optimum plus the gap (the optimum is something only trainlab knows). trainlab adds:

- `EpochTrainLoss`: the epoch's mean train/loss in `trainer.callback_metrics`, where
  EarlyStopping reads it, summed from each step's loss (an addition a step; on a GPU a device
  addition, read once per epoch). `self.log("train/loss", on_epoch=True)` would do the same through
  Lightning's result collection at every step, many times the cost of an addition.
- `EarlyStop`, Lightning's callback which also keeps the weights of the best epoch and puts them
  back when the fit ends (before the final metrics and the logged model; the last checkpoint
  keeps the last weights, to resume from), and says why and where it stopped: the tags
  `trainlab.early_stop.*` and the line `Early stop at epoch 8 (step 8): ...`. Its state (epochs
  waited, best value, best weights) is in the checkpoint, so a resumed run stops where an
  uninterrupted one would.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

from trainlab.callbacks.step_loss import StepLoss
from trainlab.engines.base import RunHandle
from trainlab.measures.trajectory import LOSS_KEY
from trainlab.signals import Interrupts

if TYPE_CHECKING:
    from trainlab.engines.base import FitContext

REASON_TAG = "trainlab.early_stop.reason"  # patience | ols_gap | non_finite
EPOCH_TAG = "trainlab.early_stop.epoch"
REASONS = {
    EarlyStoppingReason.PATIENCE_EXHAUSTED: "patience",
    EarlyStoppingReason.STOPPING_THRESHOLD: "ols_gap",
    EarlyStoppingReason.NON_FINITE_METRIC: "non_finite",
}


def early_stopping(fit: FitContext) -> list[L.Callback]:
    """The callbacks `early_stop.*` asks for (none when it is off)."""
    data = fit.data
    cfg, has_validation = (
        fit.settings.early_stop,
        data.x_val is not None or data.val_sample is not None,
    )
    monitor = cfg.monitor or ("val/loss" if has_validation else LOSS_KEY)
    threshold = None
    ols_loss = fit.references.ols_loss
    if cfg.ols_gap is not None and ols_loss is not None:
        threshold = ols_loss + cfg.ols_gap
    common = {"run": fit.run, "interrupts": fit.interrupts}
    rules: list[EarlyStop] = []
    if cfg.patience is not None:
        # One rule per metric and direction watched (each keeps its own state in checkpoints).
        joined = threshold if monitor == LOSS_KEY and cfg.mode == "min" else None
        patience = EarlyStop(
            monitor,
            cfg.patience,
            keep_best=True,
            threshold=joined,
            mode=cfg.mode,
            min_delta=cfg.min_delta,
            **common,
        )
        rules.append(patience)
        threshold = None if joined is not None else threshold
    if threshold is not None:
        rules.append(EarlyStop(LOSS_KEY, None, keep_best=False, threshold=threshold, **common))
    needs_train_loss = any(rule.monitor == LOSS_KEY for rule in rules)
    return [EpochTrainLoss(), *rules] if needs_train_loss else list(rules)


class EpochTrainLoss(L.Callback):
    """The epoch's train/loss (mean over its rows, over all DDP ranks) for the rules to read."""

    def __init__(self) -> None:
        self.loss = StepLoss()
        self._sum: Any = 0.0  # the epoch's loss * rows so far: a float, or a device tensor
        self._rows = 0
        self._on_cpu: bool | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.loss.start(trainer)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = self.loss.after_batch(trainer, outputs)
        if loss is None:
            return
        rows = len(batch[0]) if isinstance(batch, list | tuple) else 1
        if self._on_cpu is None:
            self._on_cpu = loss.device.type == "cpu"  # asked once: each ask makes a device object
        if self._on_cpu:
            self._sum += loss.item() * rows
        else:  # stays on the device until the epoch ends
            self._sum = loss.detach().double() * rows + self._sum
        self._rows += rows

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total, rows = self._sum, self._rows
        self._sum, self._rows = 0.0, 0
        mean = torch.as_tensor(total / max(rows, 1), dtype=torch.float64, device=pl_module.device)
        if trainer.world_size > 1:  # every rank decides on the same (global) number
            mean = trainer.strategy.reduce(mean, reduce_op="mean")
        # Non-monitoring callbacks run before Lightning's EarlyStopping at this hook.
        trainer.callback_metrics[LOSS_KEY] = mean if rows else torch.tensor(math.nan)


class EarlyStop(EarlyStopping):
    def __init__(
        self,
        monitor: str,
        patience: int | None,
        *,
        keep_best: bool,
        threshold: float | None = None,
        mode: str = "min",
        min_delta: float = 0.0,
        run: RunHandle | None = None,
        interrupts: Interrupts | None = None,
    ) -> None:
        super().__init__(
            monitor=monitor,
            patience=patience if patience is not None else sys.maxsize,  # a threshold alone
            mode=mode,
            min_delta=min_delta,
            stopping_threshold=threshold,
            check_finite=patience is not None,
            # train/loss exists at every epoch's end; Lightning decides for validation metrics
            # (after each validation when it does not run every epoch).
            check_on_train_epoch_end=True if monitor == LOSS_KEY else None,
            log_rank_zero_only=True,
        )
        self.gap_only = patience is None
        self.keep_best, self.run, self.interrupts = keep_best, run, interrupts
        self.best_epoch: int | None = None
        self.best_params: list[torch.Tensor] | None = None
        self.stopped_at: tuple[str, int, int] | None = None  # reason, epoch, last step
        self._seen_best = float(self.best_score)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._after_check(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._after_check(trainer, pl_module)

    def _after_check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        best = float(self.best_score)
        if self.keep_best and best != self._seen_best:  # this check improved on the best
            self._seen_best = best
            self.best_epoch = trainer.current_epoch
            self._keep(pl_module)
        reason = REASONS.get(self.stopping_reason)
        if reason is not None and self.stopped_at is None:
            self.stopped_at = (reason, trainer.current_epoch, trainer.global_step - 1)

    def _keep(self, module: L.LightningModule) -> None:
        """Copy the weights into buffers made at the first improvement: a full-batch loss
        improves at every epoch, and a copy into place costs a fraction of a new clone."""
        params = [p.detach() for p in module.parameters()]
        if self.best_params is None:
            self.best_params = [p.clone() for p in params]
            return
        for kept, param in zip(self.best_params, params, strict=True):
            kept.copy_(param)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.interrupts is not None and self.interrupts.received is not None:
            return  # stopped by a signal: the run resumes later, with these rules' state
        if self.best_params is not None:
            with torch.no_grad():
                for param, kept in zip(pl_module.parameters(), self.best_params, strict=True):
                    param.copy_(kept)
        if not trainer.is_global_zero:
            return
        if self.run is not None and self.tags():
            self.run.set_tags(self.tags())
        line = self.summary()
        if line is not None:
            print(line, flush=True)

    def tags(self) -> dict[str, Any]:
        tags: dict[str, Any] = {}
        if self.stopped_at is not None:
            reason, epoch, step = self.stopped_at
            tags = {REASON_TAG: reason, EPOCH_TAG: epoch, "trainlab.early_stop.step": step}
        if self.best_epoch is not None:
            tags["trainlab.early_stop.best_epoch"] = self.best_epoch
            tags["trainlab.early_stop.best"] = f"{float(self.best_score):.8g}"
        return tags

    def summary(self) -> str | None:
        """The line printed when the fit ends, or None when this rule did not stop it."""
        if self.stopped_at is None:
            return None
        reason, epoch, step = self.stopped_at
        if reason == "patience":
            why = f"{self.monitor} did not improve for {self.patience} epochs"
        elif reason == "ols_gap":
            why = f"train/loss is within {self.stopping_threshold:g} of the least-squares optimum"
        else:
            why = f"{self.monitor} is not finite"
        best = ""
        if self.best_epoch is not None:
            best = f"; the weights of epoch {self.best_epoch} (best {self.monitor}) are kept"
        return f"Early stop at epoch {epoch} (step {step}): {why}{best}"

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        stopped = list(self.stopped_at) if self.stopped_at is not None else None
        mine = {"best_epoch": self.best_epoch, "best_params": self.best_params, "stopped": stopped}
        return {**super().state_dict(), "trainlab": mine}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        mine = state_dict.get("trainlab", {})
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "trainlab"})
        self._restore(mine.get("best_epoch"), mine.get("best_params"), mine.get("stopped"))

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """A checkpoint written before the callbacks held this rule's state elsewhere."""
        if self.state_key in checkpoint.get("callbacks", {}) or self.gap_only:
            return
        legacy = (checkpoint.get("trainlab", {}).get("monitor") or {}).get("early_stop")
        if legacy is None:
            legacy = (checkpoint.get("callbacks", {}).get("TrainingMonitor") or {}).get(
                "early_stop"
            )
        if not legacy:
            return
        sign = 1.0 if self.mode == "min" else -1.0
        self.best_score = torch.tensor(sign * float(legacy["best"]))
        self.wait_count = int(legacy["wait"])
        self._restore(legacy["best_epoch"], legacy["best_params"], legacy["stopped"])

    def _restore(self, best_epoch: Any, best_params: Any, stopped: Any) -> None:
        self.best_epoch, self.best_params = best_epoch, best_params
        self.stopped_at = (str(stopped[0]), int(stopped[1]), int(stopped[2])) if stopped else None
        self._seen_best = float(self.best_score)
