"""Early stopping for the Lightning engine, decided by the engines' one step callback (monitor.py)
once per epoch.

Two rules: `early_stop.patience` (the monitored loss has not improved by more than `min_delta`
for `patience` epochs: Lightning's `EarlyStopping` semantics, the same comparison and count) and
`early_stop.ols_gap` (the epoch's training loss is within TOL of the least-squares optimum
`ols/loss`, a rule only a tool that knows the optimum can offer).

Why not Lightning's `EarlyStopping` callback itself: measured here on the seed (2000 one-step
epochs, CPU), each `EarlyStopping` costs ~55 us per epoch check (tensor comparisons, and the
improvement message it formats from tensors at every improvement, verbose or not): ~15% of a
Lightning step when an epoch is one step (any full-batch run); and it reads `train/loss` from
`trainer.callback_metrics`, which only `self.log` at every step fills (+0.46 ms a step). Here the
monitor adds each step's loss to a running sum (0.8 us a step on the CPU; on a GPU a device
addition, read once per epoch) and the rules compare Python floats once per epoch (~10 us with
the copy of the best weights); on this machine the difference is lost in the run-to-run noise
(median +1% CPU time over 11 alternating runs, against a spread of 10%). The state (and the
best weights) travels in the monitor's checkpoint state, so it survives a resume. The best
weights are put back once the fit ends, after the checkpoint (which keeps the last weights, to
resume from) and before the model is logged.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from trainlab.config.runtime import EarlyStopConfig
from trainlab.engines.trajectory import LOSS_KEY

REASON_TAG = "trainlab.early_stop.reason"  # patience | ols_gap | non_finite
EPOCH_TAG = "trainlab.early_stop.epoch"


class EarlyStop:
    def __init__(self, cfg: EarlyStopConfig, has_validation: bool, ols_loss: float | None) -> None:
        self.cfg, self.ols_loss = cfg, ols_loss
        self.monitor = cfg.monitor or ("val/loss" if has_validation else LOSS_KEY)
        self.sign = 1.0 if cfg.mode == "min" else -1.0  # scores are sign * value: lower is better
        self.wants_train_loss = self.monitor == LOSS_KEY or cfg.ols_gap is not None
        self._sum: Any = 0.0  # the epoch's loss * rows so far: a float, or a device tensor
        self._rows = 0
        self._world = 0  # processes, read once
        self._on_cpu: bool | None = None
        # What a checkpoint keeps:
        self.best = math.inf  # the best score so far
        self.wait = 0  # epochs since it improved
        self.best_epoch: int | None = None
        self.best_params: list[torch.Tensor] | None = None
        self.stopped: tuple[str, int, int] | None = None  # reason, epoch, last step
        self._params: list[torch.Tensor] | None = None  # the module's, detached
        self._owned = False  # best_params were made here (not loaded from a checkpoint)

    def add(self, loss: torch.Tensor, batch: Any) -> None:
        """One optimizer step's loss (called at every step: one addition)."""
        if not self.wants_train_loss:
            return
        rows = len(batch[0])
        if self._on_cpu is None:
            self._on_cpu = loss.device.type == "cpu"  # asked once: a device object costs ~1 us
        if self._on_cpu:
            self._sum += loss.item() * rows
        else:  # stays on the device until the epoch ends
            self._sum = loss.detach().double() * rows + self._sum
        self._rows += rows

    def epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._world == 0:
            self._world = trainer.world_size
        train = self._epoch_train_loss(trainer, module) if self.wants_train_loss else math.nan
        reason = None
        if self.cfg.patience is not None:
            reason = self._patience(train, trainer, module)
        gap = self.cfg.ols_gap
        if reason is None and gap is not None and self.ols_loss is not None:
            reason = "ols_gap" if train - self.ols_loss <= gap else None
        if reason is not None and self.stopped is None:
            self.stopped = (reason, trainer.current_epoch, trainer.global_step - 1)
            trainer.should_stop = True

    def _epoch_train_loss(self, trainer: L.Trainer, module: L.LightningModule) -> float:
        total, rows = self._sum, self._rows
        self._sum, self._rows = 0.0, 0
        if self._world > 1:  # every rank decides on the same (global) number
            mean = torch.as_tensor(total / max(rows, 1), dtype=torch.float64, device=module.device)
            return float(trainer.strategy.reduce(mean, reduce_op="mean"))
        return float(total / rows) if rows else math.nan

    def _patience(self, train: float, trainer: L.Trainer, module: L.LightningModule) -> str | None:
        value = train if self.monitor == LOSS_KEY else float(trainer.callback_metrics[self.monitor])
        if not math.isfinite(value):
            return "non_finite"
        score = self.sign * value
        if score < self.best - self.cfg.min_delta:
            self.best, self.wait = score, 0
            self.best_epoch = trainer.current_epoch
            self._keep_best(module)
            return None
        self.wait += 1
        return "patience" if self.wait >= self.cfg.patience else None

    def _keep_best(self, module: L.LightningModule) -> None:
        """Copy the weights into buffers made at the first improvement: a full-batch loss
        improves at every epoch, and a copy into place costs a fraction of a new clone."""
        if self._params is None:
            self._params = [p.detach() for p in module.parameters()]
        if self.best_params is None or not self._owned:
            self.best_params = [p.clone() for p in self._params]
            self._owned = True
            return
        for best, param in zip(self.best_params, self._params, strict=True):
            best.copy_(param)

    def restore_best(self, module: L.LightningModule) -> None:
        """Put the weights of the best epoch back (patience rule)."""
        if self.best_params is not None:
            with torch.no_grad():
                for param, best in zip(module.parameters(), self.best_params, strict=True):
                    param.copy_(best)

    def tags(self) -> dict[str, Any]:
        tags: dict[str, Any] = {}
        if self.stopped is not None:
            reason, epoch, step = self.stopped
            tags = {REASON_TAG: reason, EPOCH_TAG: epoch, "trainlab.early_stop.step": step}
        if self.best_epoch is not None:
            tags["trainlab.early_stop.best_epoch"] = self.best_epoch
            tags["trainlab.early_stop.best"] = f"{self.sign * self.best:.8g}"
        return tags

    def summary(self) -> str | None:
        """The line printed when the fit ends, or None when no rule stopped it."""
        if self.stopped is None:
            return None
        reason, epoch, step = self.stopped
        if reason == "patience":
            why = f"{self.monitor} did not improve for {self.cfg.patience} epochs"
        elif reason == "ols_gap":
            why = f"train/loss is within {self.cfg.ols_gap:g} of the least-squares optimum"
        else:
            why = f"{self.monitor} is not finite"
        best = ""
        if self.best_epoch is not None:
            best = f"; the weights of epoch {self.best_epoch} (best {self.monitor}) are kept"
        return f"Early stop at epoch {epoch} (step {step}): {why}{best}"

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "wait": self.wait,
            "best_epoch": self.best_epoch,
            "best_params": self.best_params,
            "stopped": list(self.stopped) if self.stopped is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = float(state["best"]), int(state["wait"])
        self.best_epoch, self.best_params = state["best_epoch"], state["best_params"]
        stopped = state["stopped"]
        self.stopped = (str(stopped[0]), int(stopped[1]), int(stopped[2])) if stopped else None
