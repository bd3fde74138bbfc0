"""The Lightning engine (note 20): the Trainer runs the loop, callbacks watch it.

The LightningModule holds the math (models/module.py, or a module of the user's); the Trainer,
instantiated from the `trainer` schema, holds forward, backward, step and zero_grad; the
callbacks of the `callbacks` config hold what cuts across (rows, console, divergence guard, early
stopping, checkpoints and signals: trainlab.callbacks) beside any the user adds; the run's
`RecorderLogger` carries what the module logs with `self.log`. trainlab passes the Trainer only
what other groups own: the device and strategy (`device.*`), the length (`max_epochs`,
`max_steps`), the callbacks, the logger and the folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Checkpoint, ProgressBar

from trainlab.callbacks.checkpoints import CommitCheckpoints
from trainlab.callbacks.from_config import build_callbacks
from trainlab.callbacks.logger import RecorderLogger
from trainlab.callbacks.rows import ROW_METRICS, StepRows
from trainlab.config.runtime import EngineConfig
from trainlab.data.batches import lightning_data
from trainlab.engines import distributed
from trainlab.engines.base import FitContext, FitResult


@dataclass
class LightningEngine(EngineConfig):
    def fit(self, context: FitContext) -> FitResult:
        settings, resume = context.settings, context.resume_from
        callbacks = [
            *distributed.callbacks(settings.device),
            *build_callbacks(settings.callbacks, context),
        ]
        trainer = build_trainer(context, callbacks)
        data_module = lightning_data(
            context.data,
            settings.data.batch_size,
            settings.data.shuffle,
            settings.seed,
            loader_state=resume.loader_states[0] if resume and resume.loader_states else None,
        )
        ckpt_path = str(resume.checkpoint) if resume is not None else None
        trainer.fit(context.module, datamodule=data_module, ckpt_path=ckpt_path)
        saver = next((c for c in callbacks if isinstance(c, CommitCheckpoints)), None)
        return FitResult(distributed.steps_done(trainer), saver.saved if saver else None)


def build_trainer(context: FitContext, callbacks: list[L.Callback]) -> L.Trainer:
    """`trainer._target_` (Lightning's Trainer) with the schema's knobs and what trainlab owns."""
    settings = context.settings
    logger: RecorderLogger | bool = False
    if context.run is not None:
        rows = any(isinstance(c, StepRows) for c in callbacks)
        logger = RecorderLogger(context.run, ROW_METRICS if rows else ())
    make = instantiate(settings.trainer, _partial_=True, _convert_="all")
    # Without a logger there is nothing to log to: spare Lightning its per-step bookkeeping.
    quiet = {} if logger else {"log_every_n_steps": 0}
    return make(
        **quiet,
        accelerator=context.accelerator,
        devices=settings.device.devices,
        num_nodes=settings.device.num_nodes,
        strategy=distributed.choose_strategy(settings.device),
        precision=settings.device.precision,
        max_epochs=settings.max_epochs,
        max_steps=settings.max_steps,
        callbacks=callbacks,
        logger=logger,
        # Lightning refuses a Checkpoint or ProgressBar callback when these are off, and adds
        # its own when they are on and none is given: they follow the callbacks.
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
        default_root_dir=str(context.checkpoint_dir.parent),
    )
