"""`ConsoleProgress`: what a Lightning fit prints, as Lightning's progress-bar callback.

The seed's line `epoch i, w = ..., loss = ...` every `print_every` steps (`epoch i step s` when an
epoch has several batches), or for long runs one progress bar over all steps (not one per epoch,
as Lightning's own bar: the seed's full-batch epochs are one step each); the policy and the bar
are console.py's, which the notes' own loops share. Only global rank 0 prints.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar

from trainlab.callbacks.step_loss import StepLoss
from trainlab.console import ConsoleReporter, format_weights

if TYPE_CHECKING:
    from trainlab.engines.base import FitContext


class ConsoleProgress(ProgressBar):
    @classmethod
    def for_run(cls, fit: FitContext) -> ConsoleProgress | None:
        """None when nothing would be printed: no lines (`print_every=0`) and no bar (off, or
        no terminal to draw it on)."""
        settings = fit.settings
        every, bar = settings.print_every, settings.engine.progress_bar
        if every == 0 and (bar is False or not sys.stderr.isatty()):
            return None
        return cls(print_every=every, progress_bar=bar)

    def __init__(self, print_every: int | None = None, progress_bar: bool | None = None) -> None:
        super().__init__()
        self.print_every, self.progress_bar = print_every, progress_bar
        self.console: ConsoleReporter | None = None
        self.loss = StepLoss()
        self.several_batches = False
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.loss.start(trainer)
        self.several_batches = trainer.num_training_batches != 1
        if trainer.is_global_zero and self.enabled:
            self.console = ConsoleReporter(
                self.print_every, self.progress_bar, total_steps(trainer), trainer.global_step
            )

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = self.loss.after_batch(trainer, outputs)
        console = self.console
        if loss is None or console is None:
            return
        step = trainer.global_step - 1
        if console.wants_line(step):
            where = f"epoch {trainer.current_epoch}"
            if self.several_batches:
                where += f" step {step}"
            console.line(f"{where}, {format_weights(pl_module)}, loss = {loss.item():.8g}")
        console.tick(step, trainer.current_epoch, loss.item)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._close(trainer)

    def _close(self, trainer: L.Trainer) -> None:
        if self.console is not None:
            self.console.close(trainer.global_step)
            self.console = None


def total_steps(trainer: L.Trainer) -> int:
    """The optimizer steps this fit takes at most (for the progress bar and the print policy)."""
    per_epoch = trainer.num_training_batches
    by_epochs = per_epoch * trainer.max_epochs if per_epoch != float("inf") else 0
    if trainer.max_steps is not None and trainer.max_steps > 0:
        return min(trainer.max_steps, by_epochs) if by_epochs else trainer.max_steps
    return int(by_epochs)
