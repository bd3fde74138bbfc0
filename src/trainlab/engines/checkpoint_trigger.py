"""When, inside a Lightning fit, a checkpoint is written or a signal stops the fit.

After every optimizer step the monitor asks `after_step`: a pending signal (Ctrl-C, SIGTERM, a
cluster's USR2) stops the Trainer at this step boundary, with a checkpoint of the position inside
the epoch; a periodic checkpoint that falls due is written now or at the epoch's end
(engines/checkpoints.py says which). Under DDP the decision is rank 0's, sent to every rank each
SYNC_EVERY steps: every rank must take part in a checkpoint at the same step.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import lightning as L

from trainlab.data.batches import TensorBatches
from trainlab.engines.checkpoints import CheckpointSaver

SYNC_EVERY = 50  # steps between DDP ranks agreeing on a stop or a checkpoint (one broadcast)

STOP, NOW, AT_EPOCH_END = "stop", "now", "epoch"


class CheckpointTrigger:
    def __init__(
        self, saver: CheckpointSaver, distributed: bool, value: Callable[[L.Trainer], float | None]
    ) -> None:
        self.saver, self.distributed = saver, distributed
        self.value = value  # the monitored metric's current value, read only when one is written
        self.epoch_started = time.monotonic()
        self.pending = False  # a checkpoint due at this epoch's end
        self.stopped_inside_epoch = False  # a signal stopped the fit between two batches

    def after_step(self, trainer: L.Trainer, batch_idx: int, stop_requested: bool) -> None:
        if not self.distributed:
            self._act(trainer, batch_idx, self._decide(trainer, batch_idx, stop_requested))
        elif trainer.global_step % SYNC_EVERY == 0:
            mine = (
                self._decide(trainer, batch_idx, stop_requested) if trainer.is_global_zero else None
            )
            self._act(trainer, batch_idx, trainer.strategy.broadcast(mine, src=0))

    def epoch_start(self) -> None:
        self.epoch_started = time.monotonic()

    def epoch_end(self, trainer: L.Trainer) -> None:
        if self.pending:
            self.pending = False
            self.save(trainer, None)

    def save(self, trainer: L.Trainer, position: int | None) -> None:
        """A checkpoint of this step; `position`: batches trained in an unfinished epoch."""
        loader = trainer.train_dataloader
        if isinstance(loader, TensorBatches):
            loader.at_batch(position)
        self.saver.save(trainer, self.value(trainer) if trainer.is_global_zero else None)

    def _decide(self, trainer: L.Trainer, batch_idx: int, stop_requested: bool) -> str | None:
        if stop_requested:
            return STOP
        if self.pending or not self.saver.due(trainer.global_step):
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
            if not inside_epoch:
                return  # the fit ends with this epoch; on_train_end writes the checkpoint
            self.stopped_inside_epoch = True
        self.save(trainer, batch_idx + 1 if inside_epoch else None)
