"""Divergence guard: a run whose loss turns NaN or inf stops at that step, FAILED, with the reason.

Why not Lightning's EarlyStopping(check_finite=True): it needs `train/loss` given to `self.log` at
every step (the cost tracking avoids) and ends the run as a success.

Cost: on the CPU the loss is read at every step (no sync there; ~1 us against ~400 us for a
Lightning step). On an accelerator each step only keeps its (detached) loss tensor: no kernel
launch, no sync; every `guard.check_every` steps the kept losses are stacked and checked in one
go (three kernels and one host read), which gives the exact first bad step. An earlier version
updated a running flag on the device at every step: seven tiny kernels a step, 5% of a CUDA step
of the 1M x 64 benchmark.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import torch

from trainlab.config.runtime import GuardConfig
from trainlab.engines.base import RunRecorder
from trainlab.errors import ConfigError

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


class DivergenceGuard:
    """Stops (mode 'stop') or warns once (mode 'warn') at the first non-finite train/loss."""

    def __init__(self, cfg: GuardConfig, run: RunRecorder | None) -> None:
        self.mode, self.check_every, self.run = cfg.nonfinite, cfg.check_every, run
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
