"""The one Lightning callback of a run: what happens after every optimizer step.

After each step: the step's row (loss, parameters, gap) goes to the run, the divergence guard
looks at the loss, the console prints the seed's line or redraws the progress bar, a pending
signal (Ctrl-C, SIGTERM, a cluster's USR2) stops the Trainer at this step boundary, and a due
checkpoint is written (engines/checkpoints.py says when). At the end of the fit the last
checkpoint is written. Under DDP these decisions are rank 0's, sent to every rank each
SYNC_EVERY steps (every rank must write a checkpoint at the same step).

Why one callback and not one per concern: Lightning calls every hook of every callback at every
step, about 8 us per callback per step here (measured: 2000 steps of the seed with 0 and 5 empty
callbacks), 2% of a Lightning step each; the parts are plain objects called in order from here.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L

from trainlab.data.batches import TensorBatches
from trainlab.engines.base import FitContext
from trainlab.engines.checkpoints import CheckpointSaver
from trainlab.engines.console import ConsoleReporter, format_weights
from trainlab.engines.guard import DivergenceGuard
from trainlab.engines.trajectory import LOSS_KEY, row_keys, step_row
from trainlab.signals import in_main_thread

SYNC_EVERY = 50  # steps between DDP ranks agreeing on a stop or a checkpoint (one broadcast)


class TrainingMonitor(L.Callback):
    def __init__(self, context: FitContext, checkpoints: CheckpointSaver) -> None:
        settings = context.settings
        self.run = context.run
        self.interrupts = context.interrupts
        self.ols_loss = context.ols_loss
        self.limit = settings.tracking.trajectory_limit
        self.guard = DivergenceGuard(settings.guard, context.run)
        self.checkpoints = checkpoints
        self.print_every, self.progress_bar = settings.print_every, settings.engine.progress_bar
        self.console: ConsoleReporter | None = None
        self.keys: list[str] = []
        self.several_batches = False
        self.distributed = settings.device.world_size > 1
        self.last_loss: Any = None
        self.epoch_started = time.monotonic()
        self.pending = False  # a checkpoint due when the next epoch starts
        self.stopped_inside_epoch = False  # a signal stopped the fit between two batches

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.keys = row_keys(pl_module, self.limit, self.ols_loss)
        self.several_batches = trainer.num_training_batches != 1
        self.checkpoints.schedule(trainer.global_step)
        self.guard.start(pl_module.device, trainer.global_step)
        if trainer.is_global_zero:
            self.console = ConsoleReporter(
                self.print_every, self.progress_bar, total_steps(trainer), trainer.global_step
            )
        # The Trainer has just put its own SIGTERM handler in place; ours takes over again.
        if in_main_thread():
            self.interrupts.install()
        self.interrupts.deferred = True

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step - 1
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if self.run is not None and trainer.is_global_zero:
            self.run.add(
                self.keys, step_row(loss, pl_module.parameters(), self.limit, self.ols_loss), step
            )
        console = self.console
        if console is not None:
            if console.wants_line(step):
                where = f"epoch {trainer.current_epoch}"
                if self.several_batches:
                    where += f" step {step}"
                console.line(f"{where}, {format_weights(pl_module)}, loss = {loss.item():.8g}")
            console.tick(step, trainer.current_epoch, loss.item)
        # After the row and the line: the bad step is in the history before the run stops.
        self.guard.after_step(step, loss, lambda: learning_rate(trainer))
        self.last_loss = loss
        if not self.distributed:
            self._act(trainer, pl_module, batch_idx, self._action(trainer, batch_idx))
        elif trainer.global_step % SYNC_EVERY == 0:
            action = self._action(trainer, batch_idx) if trainer.is_global_zero else None
            self._act(trainer, pl_module, batch_idx, trainer.strategy.broadcast(action, src=0))

    def _action(self, trainer: L.Trainer, batch_idx: int) -> str | None:
        """stop (a signal), now (a checkpoint at this step), epoch (at this epoch's end)."""
        if self.interrupts.received is not None:
            return "stop"
        if self.pending or not self.checkpoints.due(trainer.global_step):
            return None
        remaining = trainer.num_training_batches - batch_idx - 1
        per_batch = (time.monotonic() - self.epoch_started) / (batch_idx + 1)
        return "epoch" if self.checkpoints.wait_for_epoch_end(remaining, per_batch) else "now"

    def _act(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch_idx: int, action: str | None
    ) -> None:
        if action is None:
            return
        inside_epoch = batch_idx + 1 < trainer.num_training_batches
        if action == "epoch":
            self.pending = True
            return
        if action == "stop":
            trainer.should_stop = True
            if not inside_epoch:
                return  # the fit ends with this epoch; on_train_end writes the checkpoint
            self.stopped_inside_epoch = True
        self._save(trainer, pl_module, batch_idx + 1 if inside_epoch else None)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_started = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.pending:
            self.pending = False
            self._save(trainer, pl_module, None)

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule, position: int | None) -> None:
        """A checkpoint of this step; `position`: batches trained in an unfinished epoch."""
        loader = trainer.train_dataloader
        if isinstance(loader, TensorBatches):
            loader.at_batch(position)
        value = self._monitored(trainer, pl_module) if trainer.is_global_zero else None
        self.checkpoints.save(trainer, value)

    def _monitored(self, trainer: L.Trainer, pl_module: L.LightningModule) -> float | None:
        """The value the best checkpoints are ranked by, read only when one is written."""
        monitor = self.checkpoints.monitor
        if monitor == "val/loss":
            value = trainer.callback_metrics.get("val/loss")
            return float(value) if value is not None else None
        if self.last_loss is None:
            return None
        if monitor == LOSS_KEY:
            return float(self.last_loss)
        row = step_row(self.last_loss, pl_module.parameters(), self.limit, self.ols_loss)
        values = row.tolist() if hasattr(row, "tolist") else row
        return float(values[self.keys.index(monitor)])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.run is None or not trainer.is_global_zero or trainer.sanity_checking:
            return
        if self.stopped_inside_epoch:
            # Lightning validates once more when stopped inside an epoch; the resumed run
            # validates at this epoch's real end, so this one is not part of the history.
            return
        value = trainer.callback_metrics.get("val/loss")
        if value is not None:
            self.run.add(
                ["val/loss"], value.detach().reshape(1).double(), max(trainer.global_step - 1, 0)
            )

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # So that `resume=<path>` finds the MLflow run the checkpoint belongs to.
        checkpoint["trainlab"] = {"run_id": self.run.run_id if self.run is not None else None}

    # Lightning keeps a callback's state in the checkpoint: the best checkpoints so far.
    def state_dict(self) -> dict[str, Any]:
        return self.checkpoints.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.checkpoints.load_state_dict(state_dict)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.interrupts.deferred = False
        self.guard.check(lambda: learning_rate(trainer))
        self._close_console(trainer)
        if self.run is not None and trainer.is_global_zero:
            # Also handed over here because under ddp_spawn this callback is a copy in another
            # process, whose rows the pipeline's final flush cannot reach.
            self.run.flush()
        self._save(trainer, pl_module, None)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.interrupts.deferred = False
        if in_main_thread():
            self.interrupts.install()  # Lightning ignores Ctrl-C during its shutdown; not us
        self._close_console(trainer)
        if self.run is not None and trainer.is_global_zero:
            self.run.flush()

    def _close_console(self, trainer: L.Trainer) -> None:
        if self.console is not None:
            self.console.close(trainer.global_step)
            self.console = None


def total_steps(trainer: L.Trainer) -> int:
    """The optimizer steps this fit will take at most (for the progress bar and print policy)."""
    per_epoch = trainer.num_training_batches
    by_epochs = per_epoch * trainer.max_epochs if per_epoch != float("inf") else 0
    if trainer.max_steps is not None and trainer.max_steps > 0:
        return min(trainer.max_steps, by_epochs) if by_epochs else trainer.max_steps
    return int(by_epochs)


def learning_rate(trainer: L.Trainer) -> float | None:
    optimizers = trainer.optimizers
    return optimizers[0].param_groups[0]["lr"] if optimizers else None
