"""Divergence guard: a run whose loss turns NaN or inf stops at that step, FAILED, with the reason.

Why a callback of its own: Lightning's EarlyStopping(check_finite=True) needs `train/loss` given
to `self.log` at every step (the cost tracking avoids) and ends the run as a success.

Cost: on the CPU the loss is read at every step (no sync there; ~1 µs against ~400 µs for a
Lightning step). On an accelerator the check stays on the device: each step adds three tiny
tensor ops (`ok &= isfinite(loss)`, `finite_steps += ok`, keep the loss while ok) and the host
reads the result every `guard.check_every` steps, since each read is a host-device sync. The
count of finite steps gives the exact first bad step even when it is read later.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import lightning as L
import torch

from trainlab.schema import ConfigError, GuardConfig
from trainlab.tracking import MlflowRun

HINT = "lower optimizer.lr, or set data.standardize=true for features on large scales"


class DivergedError(ConfigError):
    """The loss became NaN or inf: a config that cannot train (too large a learning rate ...)."""

    def __init__(self, step: int, value: float, lr: float | None) -> None:
        self.step, self.value = step, value
        at_lr = f" with optimizer lr={lr:g}" if lr is not None else ""
        super().__init__(
            f"train/loss became {value} at step {step}{at_lr}; the run stopped there "
            f"(guard.nonfinite=stop); {HINT}"
        )


class DivergenceGuard(L.Callback):
    """Stops (mode 'stop') or warns once (mode 'warn') at the first non-finite train/loss."""

    def __init__(self, cfg: GuardConfig, run: MlflowRun | None) -> None:
        self.mode, self.check_every, self.run = cfg.nonfinite, cfg.check_every, run
        self._ok: torch.Tensor | None = None  # every loss finite since `_from_step`
        self._finite_steps: torch.Tensor | None = None  # steps before the first bad one
        self._first_value: torch.Tensor | None = None  # the loss at the first bad step
        self._from_step = 0
        self.read_every_step = False  # True on the CPU, where reading a tensor costs no sync
        self.warned = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.read_every_step = pl_module.device.type == "cpu"
        self._reset(pl_module.device, trainer.global_step)

    def _reset(self, device: torch.device, step: int) -> None:
        self._ok = torch.ones((), dtype=torch.bool, device=device)
        self._finite_steps = torch.zeros((), dtype=torch.int64, device=device)
        self._first_value = torch.zeros((), dtype=torch.float64, device=device)
        self._from_step = step

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.warned or self._ok is None or self._finite_steps is None:
            return
        loss = (outputs["loss"] if isinstance(outputs, dict) else outputs).detach()
        if self.read_every_step and loss.numel() == 1:
            # On the CPU reading the value is no sync and cheaper than the tensor ops below.
            value = loss.item()
            if not math.isfinite(value):
                self._report(trainer, trainer.global_step - 1, value)
            return
        loss = loss.double()
        # While every loss so far is finite, remember this one: it is the first bad one if any.
        self._first_value = torch.where(self._ok, loss.reshape(()), self._first_value)
        self._ok &= torch.isfinite(loss).all()
        self._finite_steps += self._ok
        if trainer.global_step % self.check_every == 0:
            self.check(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        if self.warned or self._ok is None or bool(self._ok):
            return
        assert self._finite_steps is not None and self._first_value is not None
        self._report(trainer, self._from_step + int(self._finite_steps), self._first_value.item())

    def _report(self, trainer: L.Trainer, step: int, value: float) -> None:
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
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
