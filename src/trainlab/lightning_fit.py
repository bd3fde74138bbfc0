"""The Lightning engine (note 20): the Trainer runs the loop over the in-memory data module.

The LightningModule (module.py) holds the math; the Trainer holds forward, backward, step and
zero_grad; callbacks hold what cuts across: tracking, printing, the divergence guard,
checkpoints and signals.
"""

from __future__ import annotations

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from trainlab import distributed
from trainlab.console import ConsolePrinter
from trainlab.data import Dataset, TensorDataModule
from trainlab.guard import DivergenceGuard
from trainlab.module import RegressionModule
from trainlab.paths import output_dir
from trainlab.resume import LastCheckpoint, ResumePoint
from trainlab.schema import TrainConfig
from trainlab.signals import Interrupts, StopOnSignal
from trainlab.tracking import MlflowRun, TrackingCallback


def build_module(cfg: DictConfig, data: Dataset) -> RegressionModule:
    model = instantiate(cfg.model, in_features=data.n_features, out_features=data.n_targets)
    has_scheduler = cfg.scheduler.get("_target_") is not None
    return RegressionModule(
        model=model,
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if has_scheduler else None,
        monitor="val/loss" if data.x_val is not None else "train/loss",
    )


def fit_lightning(
    settings: TrainConfig,
    module: RegressionModule,
    data: Dataset,
    accelerator: str,
    run: MlflowRun | None,
    ols_loss: float | None = None,
    interrupts: Interrupts | None = None,
    resume_from: ResumePoint | None = None,
    checkpoint: LastCheckpoint | None = None,
) -> int:
    callbacks = [*distributed.callbacks(settings.device), ConsolePrinter(settings.print_every)]
    if run is not None:
        callbacks.append(TrackingCallback(run, settings.tracking.trajectory_limit, ols_loss))
    # After tracking, so that the bad step's values are in the history before the run stops.
    callbacks.append(DivergenceGuard(settings.guard, run))
    callbacks.append(checkpoint or LastCheckpoint(output_dir() / "checkpoints", run))
    if interrupts is not None:
        callbacks.append(StopOnSignal(interrupts))
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=settings.device.devices,
        num_nodes=settings.device.num_nodes,
        strategy=distributed.choose_strategy(settings.device),
        precision=settings.device.precision,
        max_epochs=settings.max_epochs,
        max_steps=settings.max_steps,
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=settings.engine.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=output_dir(),
    )
    data_module = TensorDataModule(
        data,
        settings.data.batch_size,
        settings.data.shuffle,
        settings.seed,
        restore=resume_from.restore if resume_from is not None else None,
    )
    ckpt_path = str(resume_from.checkpoint) if resume_from is not None else None
    trainer.fit(module, datamodule=data_module, ckpt_path=ckpt_path)
    return distributed.steps_done(trainer)
