"""`DivergenceGuard`: a run whose loss turns NaN or inf stops at that step, FAILED, with the reason.

Why not Lightning's EarlyStopping(check_finite=True): it reads a metric given to `self.log` at
every step (a second per-step cost beside the run's rows), looks only once per epoch, and ends
the run as a success.

Cost: on the CPU the loss is read at every step (no sync there; a small fraction of a
Lightning step). On an accelerator each step only keeps its (detached) loss tensor: no kernel
launch, no sync; every `guard.check_every` steps the kept losses are stacked and checked in one
go (three kernels and one host read), which still gives the exact first bad step. (Updating a
running flag on the device at every step instead took seven tiny kernels a step.)
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lightning as L
import torch

from trainlab.callbacks.step_loss import StepLoss, learning_rate
from trainlab.engines.base import RunHandle
from trainlab.errors import ConfigError

if TYPE_CHECKING:
    from trainlab.engines.base import FitContext

HINT = "lower optimizer.lr, or set data.standardize=true for features on large scales"
MODES = ("stop", "warn")


class DivergedError(ConfigError):
    """The loss became NaN or inf: a config that cannot train (too large a learning rate ...)."""

    def __init__(self, step: int, value: float, lr: float | None) -> None:
        self.step, self.value = step, value
        at_lr = f" with optimizer lr={lr:g}" if lr is not None else ""
        super().__init__(
            f"train/loss became {value} at step {step}{at_lr}; the run stopped there "
            f"(guard.nonfinite=stop); {HINT}"
        )


class NonFiniteLoss:
    """Finds the first non-finite loss; stops (mode 'stop') or warns once (mode 'warn')."""

    def __init__(self, mode: str = "stop", check_every: int = 50, run: RunHandle | None = None):
        self.mode, self.check_every, self.run = mode, check_every, run
        self._kept: list[torch.Tensor] = []  # losses since `_from_step`, on the device
        self._from_step = 0
        self.read_every_step = True  # on the CPU, where reading a tensor costs no sync
        self.warned = False

    def start(self, device: torch.device, step: int) -> None:
        self.read_every_step = device.type == "cpu"
        self._kept, self._from_step = [], step

    def after_step(self, step: int, loss: torch.Tensor, lr: Callable[[], float | None]) -> None:
        """Optimizer step `step` (0-based) produced `loss`; `lr` is read only to report."""
        if self.warned:
            return
        loss = loss.detach()
        if self.read_every_step and loss.numel() == 1:
            value = loss.item()
            if not math.isfinite(value):
                self._report(step, value, lr())
            return
        if not self._kept:
            self._from_step = step
        self._kept.append(loss.reshape(-1).sum())  # any NaN or inf makes the sum non-finite
        if len(self._kept) >= self.check_every:
            self.check(lr)

    def check(self, lr: Callable[[], float | None]) -> None:
        """Check the kept losses (one host read); report the first bad step if there is one."""
        if self.warned or not self._kept:
            return
        losses, first = torch.stack(self._kept).double(), self._from_step
        self._kept = []
        bad = ~torch.isfinite(losses)
        if bool(bad.any()):
            index = int(bad.nonzero()[0])
            self._report(first + index, losses[index].item(), lr())

    def _report(self, step: int, value: float, lr: float | None) -> None:
        kind = "failure" if self.mode == "stop" else "warning"
        if self.run is not None:
            self.run.set_tags({f"trainlab.{kind}": "nonfinite_loss", f"trainlab.{kind}_step": step})
        if self.mode == "stop":
            raise DivergedError(step, value, lr)
        self.warned = True
        print(
            f"trainlab-train: warning: train/loss became {value} at step {step}; training goes on "
            f"(guard.nonfinite=warn); {HINT}",
            file=sys.stderr,
        )


class DivergenceGuard(L.Callback):
    """After each optimizer step (after the rows and the console line, which come earlier in the
    callbacks: the bad step is in the history before the run stops)."""

    @classmethod
    def for_run(cls, fit: FitContext) -> DivergenceGuard:
        guard = fit.settings.guard
        return cls(nonfinite=guard.nonfinite, check_every=guard.check_every, run=fit.run)

    def __init__(
        self, nonfinite: str = "stop", check_every: int = 50, run: RunHandle | None = None
    ) -> None:
        if nonfinite not in MODES:
            raise ConfigError(f"nonfinite={nonfinite!r} is not allowed: expected stop or warn")
        self.check = NonFiniteLoss(nonfinite, check_every, run)
        self.loss = StepLoss()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check.start(pl_module.device, trainer.global_step)
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
        if loss is not None:
            self.check.after_step(trainer.global_step - 1, loss, lambda: learning_rate(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check.check(lambda: learning_rate(trainer))
