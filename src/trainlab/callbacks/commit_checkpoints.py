"""`CommitCheckpoints`: when in a fit a checkpoint is written, and the stop at a signal.

When: every `checkpoint.every_seconds` or `every_n_steps`, at the end of the fit and at a signal
(Ctrl-C, SIGTERM, a cluster's USR2: signals.py defers it to the next step boundary). A checkpoint
that falls due inside an epoch is written at the epoch's end (in on_train_epoch_end, after its
validation and after early stopping decided: Lightning resumes such a checkpoint at the next
epoch, scheduler step included, and the history then matches an uninterrupted run exactly),
unless the rest of the epoch is longer than one interval: then at that step, with the batcher's
position (data/batches.py). A signal stops the Trainer at the step boundary it arrives before,
with a checkpoint of that position. Under DDP the decision is rank 0's, sent to every rank each
SYNC_EVERY steps: every rank must take part in a checkpoint at the same step.

Why not Lightning's ModelCheckpoint: its time and step triggers write at once, mid-epoch, and its
files are named, kept and deleted by its own scheme; trainlab's checkpoints commit with the
metrics (checkpoint_saver.py), sit in fixed best-k slots the artifact store can overwrite, and
wait for an epoch's end so that a resume repeats history exactly. A Lightning `Checkpoint`, so
Lightning runs it after every other callback (early stopping first) and knows it checkpoints.

Untracked runs write none (an untracked run has no run to continue) and only stop at signals.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

from trainlab.callbacks.checkpoint_writer import CheckpointSaver
from trainlab.callbacks.rows import StepRows
from trainlab.config.checkpoint import CheckpointConfig
from trainlab.data.batches import TensorBatches
from trainlab.engines.base import RunHandle
from trainlab.signals import Interrupts, in_main_thread

if TYPE_CHECKING:
    from trainlab.engines.base import FitContext

SYNC_EVERY = 50  # steps between DDP ranks agreeing on a stop or a checkpoint (one broadcast)
STOP, NOW, AT_EPOCH_END = "stop", "now", "epoch"


class CommitCheckpoints(Checkpoint):
    @classmethod
    def for_run(cls, fit: FitContext) -> CommitCheckpoints:
        settings = fit.settings
        return cls(
            folder=fit.checkpoint_dir,
            run=fit.run,
            config=settings.checkpoint,
            ranked_by=fit.ranking_metric,
            interrupts=fit.interrupts,
            tracked=settings.tracking.enabled,  # the job's: the same on every DDP rank
            distributed=settings.device.world_size > 1,
        )

    def __init__(
        self,
        folder: Path,
        run: RunHandle | None,
        config: CheckpointConfig,
        ranked_by: str,
        interrupts: Interrupts,
        tracked: bool = True,
        distributed: bool = False,
    ) -> None:
        self.saver = CheckpointSaver(folder, run, config, ranked_by)
        self.run, self.interrupts = run, interrupts
        self.tracked, self.distributed = tracked, distributed
        self.epoch_started = time.monotonic()
        self.pending = False  # a checkpoint due at this epoch's end
        self.steps_seen = 0
        self.rows: StepRows | None = None  # the run's rows, where a ranking metric may be

    @property
    def saved(self) -> Path | None:
        """The last checkpoint written in this fit, if any."""
        return self.saver.saved

    # ------------------------------------------------------------------ the fit
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.steps_seen = trainer.global_step
        self.rows = next((c for c in trainer.callbacks if isinstance(c, StepRows)), None)
        if self.tracked:
            self.saver.schedule(trainer.global_step)
        # The Trainer has just put its own SIGTERM handler in place; ours takes over again.
        if in_main_thread():
            self.interrupts.install()
        self.interrupts.deferred = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.saver.commit_deferred()  # the last epoch's checkpoint, with its logged values
        self.epoch_started = time.monotonic()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        stop = self.interrupts.received is not None
        step = trainer.global_step  # read once: a Trainer property is a chain of calls
        if step == self.steps_seen:  # a batch whose gradients wait (accumulation)
            if stop:
                trainer.should_stop = True
            return
        self.steps_seen = step
        if not self.distributed:
            # The common case, at every step: nothing due, no signal.
            if stop or (self.tracked and not self.pending and self.saver.due(step)):
                self._act(trainer, batch_idx, self._decide(trainer, batch_idx, stop))
        elif step % SYNC_EVERY == 0:
            mine = self._decide(trainer, batch_idx, stop) if trainer.is_global_zero else None
            self._act(trainer, batch_idx, trainer.strategy.broadcast(mine, src=0))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.pending:
            self.pending = False
            # Lightning logs the epoch's values after this hook: they commit with it, at the
            # next epoch's start (or the fit's end).
            self.save(trainer, None, defer_commit=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.interrupts.deferred = False
        if self.tracked:  # every rank takes part
            self.save(trainer, None)  # the last weights: what a resume goes on from

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.saver.commit_deferred()  # a whole epoch, its values logged
        self.interrupts.deferred = False
        if in_main_thread():
            self.interrupts.install()  # Lightning ignores Ctrl-C during its shutdown; not us

    # ------------------------------------------------------------------ deciding and saving
    def _decide(self, trainer: L.Trainer, batch_idx: int, stop: bool) -> str | None:
        if stop:
            return STOP
        if not self.tracked or self.pending or not self.saver.due(trainer.global_step):
            return None
        remaining = trainer.num_training_batches - batch_idx - 1
        per_batch = (time.monotonic() - self.epoch_started) / (batch_idx + 1)
        return AT_EPOCH_END if self.saver.wait_for_epoch_end(remaining, per_batch) else NOW

    def _act(self, trainer: L.Trainer, batch_idx: int, action: str | None) -> None:
        if action is None:
            return
        if action == AT_EPOCH_END:
            self.pending = True
            return
        inside_epoch = batch_idx + 1 < trainer.num_training_batches
        if action == STOP:
            trainer.should_stop = True
            if not inside_epoch or not self.tracked:
                return  # the fit ends with this epoch; on_train_end writes the checkpoint
        self.save(trainer, batch_idx + 1 if inside_epoch else None)

    def save(self, trainer: L.Trainer, position: int | None, defer_commit: bool = False) -> None:
        """A checkpoint of this step; `position`: batches trained in an unfinished epoch."""
        loader = trainer.train_dataloader
        if isinstance(loader, TensorBatches):
            loader.at_batch(position)
        value = self.ranking_value(trainer) if trainer.is_global_zero else None
        self.saver.save(trainer, value, defer_commit)

    def ranking_value(self, trainer: L.Trainer) -> float | None:
        """The value the best checkpoints are ranked by, read only when one is written: a row's
        (train/loss, a weight, ols/gap ...) or what the module logged (val/loss ...)."""
        key = self.saver.ranked_by
        if self.rows is not None and key in self.rows.keys:
            return self.rows.value(key)
        value = trainer.callback_metrics.get(key)
        return float(value) if value is not None else None

    # ------------------------------------------------------------------ checkpoint contents
    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # The MLflow run, so that `resume=<path/to/last.ckpt>` finds it.
        checkpoint["trainlab"] = {"run_id": self.run.run_id if self.run is not None else None}

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.state_key in checkpoint.get("callbacks", {}):
            return  # load_state_dict follows
        # Written before the callbacks: the whole watcher's state in one place.
        legacy = checkpoint.get("trainlab", {}).get("monitor")
        if legacy is None:
            legacy = checkpoint.get("callbacks", {}).get("TrainingMonitor")
        if legacy:
            self.saver.load_state_dict(legacy)

    def state_dict(self) -> dict[str, Any]:
        return self.saver.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.saver.load_state_dict(state_dict)
