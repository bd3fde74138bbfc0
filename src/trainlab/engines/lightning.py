"""The Lightning engine (note 20): the Trainer runs the loop over the in-memory data module.

The LightningModule (models/module.py) holds the math; the Trainer holds forward, backward, step
and zero_grad; the monitor (monitor.py, called from the module's hooks) holds what cuts across:
tracking, printing, the divergence guard, the checkpoints and signals.
"""

from __future__ import annotations

import lightning as L

from trainlab.data.batches import lightning_data
from trainlab.engines import distributed
from trainlab.engines.base import FitContext, FitResult
from trainlab.engines.checkpoints import CheckpointSaver, monitored
from trainlab.engines.monitor import TrainingMonitor
from trainlab.engines.trajectory import row_keys


def fit_lightning(context: FitContext) -> FitResult:
    settings, resume = context.settings, context.resume_from
    tracking = settings.tracking
    keys = row_keys(context.module, tracking.trajectory_limit, context.ols_loss, tracking.grad_norm)
    ranked_by = monitored(settings.checkpoint, keys, context.data.x_val is not None)
    checkpoints = CheckpointSaver(
        context.checkpoint_dir, context.run, settings.checkpoint, ranked_by
    )
    monitor = TrainingMonitor(context, checkpoints)
    callbacks = [*distributed.callbacks(settings.device), *monitor.helpers]
    knobs = settings.trainer
    trainer = L.Trainer(
        accelerator=context.accelerator,
        devices=settings.device.devices,
        num_nodes=settings.device.num_nodes,
        strategy=distributed.choose_strategy(settings.device),
        precision=settings.device.precision,
        max_epochs=settings.max_epochs,
        max_steps=settings.max_steps,
        gradient_clip_val=knobs.gradient_clip_val,
        gradient_clip_algorithm=knobs.gradient_clip_algorithm,
        accumulate_grad_batches=knobs.accumulate_grad_batches,
        deterministic=knobs.deterministic,
        check_val_every_n_epoch=knobs.check_val_every_n_epoch,
        logger=False,
        log_every_n_steps=0,  # no Lightning logger: skip its per-step bookkeeping
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,  # the monitor draws its own, over all steps, not per epoch
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=context.checkpoint_dir.parent,
    )
    data_module = lightning_data(
        context.data,
        settings.data.batch_size,
        settings.data.shuffle,
        settings.seed,
        loader_state=resume.loader_states[0] if resume and resume.loader_states else None,
    )
    ckpt_path = str(resume.checkpoint) if resume is not None else None
    # The monitor watches through the module's hooks and the data module's on_exception
    # (monitor.py says why it is not a callback); for this fit only.
    monitor.trainer, data_module.on_failure = trainer, monitor.on_exception
    context.module.observer = monitor
    try:
        trainer.fit(context.module, datamodule=data_module, ckpt_path=ckpt_path)
    finally:
        context.module.observer = None
    return FitResult(distributed.steps_done(trainer), checkpoints.saved)
