"""How a checkpoint is written and committed, and which are the best (the `CommitCheckpoints`
callback, checkpoints.py, decides when). Lightning's own format (weights, optimizer and scheduler
state, loop progress, every callback's state, the batcher's shuffle state and position) plus the
MLflow run it belongs to (`checkpoint["trainlab"]["run_id"]`, which `resume=<path>` reads).

The trainer writes `last.ckpt.partial`; then, for a tracked run, hands its rows and the checkpoint
to the recorder, which fsyncs it and renames it over `last.ckpt` once those rows are in the store
(the metric history never runs ahead of the checkpoint; the fsync is the recorder's while the
trainer goes on). An untracked run fsyncs and renames it at once. A kill never leaves a torn
`last.ckpt`. The best k by the ranking metric sit in fixed slots
(checkpoints/files.py).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from trainlab.checkpoints.files import LAST, PARTIAL, fsync_path, link_best
from trainlab.config.checkpoint import CheckpointConfig
from trainlab.errors import ConfigError

if TYPE_CHECKING:
    import lightning as L

    from trainlab.engines.base import RunHandle


def ranking_metric(config: CheckpointConfig, keys: list[str], has_validation: bool) -> str:
    """The metric the best checkpoints are ranked by (`checkpoint.monitor`), checked against the
    metrics of trainlab's own module before the run opens."""
    allowed = [*keys, "val/loss"] if has_validation else keys
    monitor = config.monitor or ("val/loss" if has_validation else "train/loss")
    if monitor not in allowed:
        raise ConfigError(
            f"checkpoint.monitor={monitor!r} is not a metric of this run; expected one of "
            f"{', '.join(allowed)} (val/loss needs data.val_split > 0)"
        )
    return monitor


class CheckpointSaver:
    def __init__(
        self, folder: Path, run: RunHandle | None, config: CheckpointConfig, ranked_by: str
    ) -> None:
        self.path = folder / LAST
        self.staged = folder / (LAST + PARTIAL)
        self.run, self.config, self.ranked_by = run, config, ranked_by
        self.saved: Path | None = None
        self.committed_step = -1  # the global step of the last checkpoint written
        # A checkpoint written whose commit waits: (step, best-k place, best tags).
        self.deferred: tuple[int, tuple[int | None, int], dict[str, str]] | None = None
        self.best: list[tuple[float, int]] = []  # (value, step), the best first
        self.next_time = math.inf
        self.next_step = math.inf

    def schedule(self, step: int) -> None:
        """The next periodic checkpoint, counted from `step` (a fit's start or a checkpoint)."""
        if self.config.every_seconds is not None:
            self.next_time = time.monotonic() + self.config.every_seconds
        if self.config.every_n_steps is not None:
            self.next_step = step + self.config.every_n_steps

    def due(self, steps_done: int) -> bool:
        """Cheap enough for every step: an integer compare and a clock read."""
        return steps_done >= self.next_step or time.monotonic() >= self.next_time

    def wait_for_epoch_end(self, remaining_batches: int, seconds_per_batch: float) -> bool:
        """A due checkpoint waits for the epoch's end unless that is more than one interval off."""
        if remaining_batches == 0:
            return True
        every_n, every_s = self.config.every_n_steps, self.config.every_seconds
        steps_ok = every_n is None or remaining_batches <= every_n
        seconds_ok = every_s is None or remaining_batches * seconds_per_batch <= every_s
        return steps_ok and seconds_ok

    def save(self, trainer: L.Trainer, value: float | None, defer_commit: bool = False) -> Path:
        """Write the checkpoint of this step (every rank takes part; rank 0 writes) and commit
        it with the rows handed over before it; with `defer_commit`, the commit waits for
        `commit_deferred` (rows of this step still to come: an epoch's logged values)."""
        self.commit_deferred()
        step = trainer.global_step
        self.schedule(step)
        if step == self.committed_step:  # nothing trained since the last one
            return self.path
        if self.run is not None and trainer.is_global_zero and self.saved is not None:
            self.run.sync()  # the previous commit has taken its staged file
        trainer.save_checkpoint(self.staged)
        if trainer.is_global_zero:
            rank = self._rank(value, step)
            if self.run is not None:
                best = (rank, self.config.save_top_k)
                self.deferred = (step, best, self._best_tags(rank))
                if not defer_commit:
                    self.commit_deferred()
            else:
                fsync_path(self.staged)
                os.replace(self.staged, self.path)
                link_best(self.path, rank, self.config.save_top_k)
            self.saved = self.path
        self.committed_step = step
        return self.path

    def commit_deferred(self) -> None:
        """Commit the checkpoint written last, with every row handed over until now."""
        if self.deferred is None or self.run is None:
            return
        step, best, tags = self.deferred
        self.deferred = None
        self.run.commit(step, self.staged, self.path, best, tags)

    def _rank(self, value: float | None, step: int) -> int | None:
        """Where this checkpoint enters the best k (1 = best), or None."""
        k = self.config.save_top_k
        if value is None or not math.isfinite(value) or k == 0:
            return None
        sign = 1.0 if self.config.mode == "min" else -1.0
        rank = 1 + sum(1 for v, _ in self.best if sign * v <= sign * value)
        if rank > k:
            return None
        self.best.insert(rank - 1, (value, step))
        del self.best[k:]
        return rank

    def _best_tags(self, rank: int | None) -> dict[str, str]:
        if rank is None:
            return {}
        return {
            f"trainlab.checkpoint.best-{i}": f"step {step}, {self.ranked_by}={value:.8g}"
            for i, (value, step) in enumerate(self.best, start=1)
            if i >= rank
        }

    def state_dict(self) -> dict:
        return {"best": [list(entry) for entry in self.best]}

    def load_state_dict(self, state: dict) -> None:
        self.best = [(float(v), int(s)) for v, s in state.get("best", [])]
