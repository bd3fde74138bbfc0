"""What watches a Lightning fit: what happens after every optimizer step.

After each step: the step's row (loss, learning rate, parameters, gap) goes to the run, the
divergence guard looks at the loss, the console prints the seed's line or redraws the progress
bar, early stopping (early_stop.py) adds the loss to the epoch's, a pending signal (Ctrl-C,
SIGTERM, a cluster's USR2) stops the Trainer at this step boundary, and a due checkpoint is
written (checkpoint_trigger.py says when). After each epoch the early-stopping rules decide. At
the end of the fit the last checkpoint is written (also when a signal stopped it), then the best
weights are put back when early stopping kept them.

Not a Lightning Callback: Lightning calls every hook of every callback at every step, overridden
or not; one empty callback costs ~23 us a step in the seed's one-batch epochs (2000 steps in a
bare Trainer: 1.137 s -> 1.184 s, measured 2026-11-26), 4% of the floor. The LightningModule
calls this object from its own hooks (models/module.py, FitObserver), which Lightning calls
anyway, and the data module passes on exceptions (Lightning reports them to callbacks and the
data module only). Its parts are plain objects called in order from here. `GradientNorm` is a
callback, added only when `tracking.grad_norm` asks for it.

With `trainer.accumulate_grad_batches=k` a row is written per optimizer step, not per batch (the
step is Lightning's global step): its `train/loss` is the mean of the k batches' losses (Lightning
hands each batch's loss over divided by k, as it is added into the gradients).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from trainlab.engines.base import FitContext
from trainlab.engines.checkpoint_trigger import CheckpointTrigger
from trainlab.engines.checkpoints import CheckpointSaver
from trainlab.engines.console import ConsoleReporter, format_weights
from trainlab.engines.early_stop import EarlyStop
from trainlab.engines.guard import DivergenceGuard
from trainlab.engines.trajectory import LOSS_KEY, gradient_norm, row_keys, step_row
from trainlab.signals import in_main_thread


class TrainingMonitor:
    def __init__(self, context: FitContext, checkpoints: CheckpointSaver) -> None:
        self.trainer: L.Trainer | None = None  # the Trainer of this fit (for on_exception)
        settings = context.settings
        self.run = context.run
        self.interrupts = context.interrupts
        self.ols_loss = context.ols_loss
        self.limit = settings.tracking.trajectory_limit
        self.guard = DivergenceGuard(settings.guard, context.run)
        self.checkpoints = checkpoints
        self.tracked = settings.tracking.enabled  # the job's, the same on every DDP rank
        self.print_every, self.progress_bar = settings.print_every, settings.engine.progress_bar
        self.console: ConsoleReporter | None = None
        self.keys: list[str] = []
        self.several_batches = False
        self.gradients = GradientNorm() if settings.tracking.grad_norm else None
        self.helpers: list[L.Callback] = [self.gradients] if self.gradients else []
        self.lr = float("nan")  # the rate the last optimizer step used
        self.lr_hook: Any = None
        self.steps_seen = 0
        self.accumulate = 1  # trainer.accumulate_grad_batches
        self.accumulated: list[torch.Tensor] = []  # losses of batches not yet stepped
        self.early_stop = (
            EarlyStop(settings.early_stop, context.data.x_val is not None, context.ols_loss)
            if settings.early_stop.enabled
            else None
        )
        self.last_loss: Any = None
        distributed = settings.device.world_size > 1
        self.trigger = CheckpointTrigger(checkpoints, distributed, self._monitored)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.keys = row_keys(pl_module, self.limit, self.ols_loss, self.gradients is not None)
        self.several_batches = trainer.num_training_batches != 1
        # Read as the optimizer steps: an epoch's scheduler step comes before the epoch's last
        # on_train_batch_end, which would see the next epoch's rate (a torch hook: ~1 us a step).
        if trainer.optimizers and self.lr_hook is None:
            self.lr_hook = trainer.optimizers[0].register_step_pre_hook(self._read_lr)
        self.steps_seen = trainer.global_step
        self.accumulate = trainer.accumulate_grad_batches
        if self.tracked:  # an untracked checkpoint could not be resumed: none is written
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
        if self.accumulate > 1:
            loss = loss.detach() * self.accumulate  # the batch's own loss again
        if trainer.global_step == self.steps_seen:  # a batch whose gradients wait (accumulation)
            # Its loss joins the step's mean: a NaN in it reaches the guard at that step.
            self.accumulated.append(loss.detach())
            if self.interrupts.received is not None:
                trainer.should_stop = True
            return
        self.steps_seen = trainer.global_step
        if self.accumulated:
            loss = torch.stack([*self.accumulated, loss.detach()]).mean()
            self.accumulated = []
        if self.run is not None and trainer.is_global_zero:
            norm = self.gradients.value if self.gradients is not None else None
            row = step_row(loss, self.lr, pl_module.parameters(), self.limit, self.ols_loss, norm)
            self.run.add(self.keys, row, step)
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
        if self.early_stop is not None:
            self.early_stop.add(loss, batch)
        self.last_loss = loss
        self.trigger.after_step(trainer, batch_idx, self.interrupts.received is not None)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.trigger.epoch_start()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Early stopping first: the checkpoint then holds its decision about this epoch.
        if self.early_stop is not None:
            self.early_stop.epoch_end(trainer, pl_module)
        self.trigger.epoch_end(trainer)

    def _monitored(self, trainer: L.Trainer) -> float | None:
        """The value the best checkpoints are ranked by, read only when one is written."""
        monitor = self.checkpoints.monitor
        if monitor == "val/loss":
            value = trainer.callback_metrics.get("val/loss")
            return float(value) if value is not None else None
        if self.last_loss is None:
            return None
        if monitor == LOSS_KEY:
            return float(self.last_loss)
        norm = self.gradients.value if self.gradients is not None else None
        parameters = trainer.lightning_module.parameters()
        row = step_row(self.last_loss, self.lr, parameters, self.limit, self.ols_loss, norm)
        values = row.tolist() if hasattr(row, "tolist") else row
        return float(values[self.keys.index(monitor)])

    def _read_lr(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.lr = optimizer.param_groups[0]["lr"]

    def _remove_lr_hook(self) -> None:
        if self.lr_hook is not None:
            self.lr_hook.remove()
            self.lr_hook = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.run is None or not trainer.is_global_zero or trainer.sanity_checking:
            return
        if self.trigger.stopped_inside_epoch:
            # Lightning validates once more when stopped inside an epoch; the resumed run
            # validates at this epoch's real end, so this one is not part of the history.
            return
        value = trainer.callback_metrics.get("val/loss")
        if value is not None:
            self.run.add(
                ["val/loss"], value.detach().reshape(1).double(), max(trainer.global_step - 1, 0)
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The MLflow run (so that `resume=<path>` finds it), the best checkpoints so far and
        # early stopping's counters.
        checkpoint["trainlab"] = {
            "run_id": self.run.run_id if self.run is not None else None,
            "monitor": self.state_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("trainlab", {}).get("monitor")
        if state is None:  # written while the monitor was a Lightning callback
            state = checkpoint.get("callbacks", {}).get("TrainingMonitor")
        if state:
            self.load_state_dict(state)

    def state_dict(self) -> dict[str, Any]:
        state = self.checkpoints.state_dict()
        if self.early_stop is not None:
            state["early_stop"] = self.early_stop.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.checkpoints.load_state_dict(state_dict)
        if self.early_stop is not None and "early_stop" in state_dict:
            self.early_stop.load_state_dict(state_dict["early_stop"])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.interrupts.deferred = False
        self._remove_lr_hook()
        self.guard.check(lambda: learning_rate(trainer))
        self._close_console(trainer)
        if self.run is not None and trainer.is_global_zero:
            # Also handed over here because under ddp_spawn this callback is a copy in another
            # process, whose rows the pipeline's final flush cannot reach.
            self.run.flush()
        if self.tracked:  # every rank takes part; an untracked checkpoint could not be resumed
            self.trigger.save(trainer, None)  # the last weights: what a resume goes on from
        if self.early_stop is not None and self.interrupts.received is None:
            self.early_stop.restore_best(pl_module)
            if trainer.is_global_zero:
                if self.run is not None and self.early_stop.tags():
                    self.run.set_tags(self.early_stop.tags())
                line = self.early_stop.summary()
                if line is not None:
                    print(line, flush=True)

    def on_exception(self, exception: BaseException) -> None:
        """The fit failed or was interrupted (called by the data module, see the docstring)."""
        trainer = self.trainer
        self.interrupts.deferred = False
        self._remove_lr_hook()
        if in_main_thread():
            self.interrupts.install()  # Lightning ignores Ctrl-C during its shutdown; not us
        if trainer is None:
            return
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


class GradientNorm(L.Callback):
    """The gradients' 2-norm before each optimizer step (before clipping, which compares it)."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        self.value = gradient_norm(pl_module.parameters())
