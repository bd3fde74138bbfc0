"""The checkpoint a run can be resumed from: Lightning's own format (weights, optimizer and
scheduler state, loop progress, the batcher's shuffle state) plus the MLflow run it belongs to.

Written atomically (a temporary file renamed over `last.ckpt`, so a kill never leaves a torn file)
into the job's output folder, and copied into the run's artifacts as `checkpoints/last.ckpt`.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L

from trainlab.engines.base import RunRecorder

ARTIFACT_DIR = "checkpoints"
LAST = "last.ckpt"


class CheckpointSaver:
    def __init__(self, folder: Path, run: RunRecorder | None) -> None:
        self.path = folder / LAST
        self.run = run
        self.saved: Path | None = None

    def save(self, trainer: L.Trainer) -> Path:
        """Save `last.ckpt` (every rank takes part; rank 0 writes) and log it to the run."""
        partial = self.path.with_name(self.path.name + ".partial")
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.path)
            self.saved = self.path
            if self.run is not None:
                self.run.log_artifact(self.path, ARTIFACT_DIR)
        return self.path
