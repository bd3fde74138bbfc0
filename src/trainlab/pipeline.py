"""The path of one run: checked config -> data -> model -> fit (tracked) -> report.

Read top to bottom, `run` is the recipe; everything it calls lives in one module per idea.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import nullcontext
from dataclasses import fields

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from trainlab import distributed, paths
from trainlab.console import format_prediction
from trainlab.data import Dataset, load_dataset, parse_x_test
from trainlab.engines import check_engine, fit_autograd, fit_numpy, ols_reference
from trainlab.lightning_fit import build_module, fit_lightning
from trainlab.model_logging import log_trained_model
from trainlab.module import RegressionModule
from trainlab.plots import plots_at_end
from trainlab.resume import LastCheckpoint, ResumePoint, plan_resume, report_interrupt
from trainlab.schema import ConfigError, DeviceConfig, TrainConfig
from trainlab.signals import handle_interrupts
from trainlab.sweep import SweepJob, current_job
from trainlab.tracking import (
    MlflowRun,
    check_store,
    flatten,
    git_commit,
    open_run,
)


def quiet_libraries() -> None:
    """Keep the console to the seed's lines: drop Lightning's banners and harmless warnings."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)  # DDP's "Initializing ..."
    warnings.filterwarnings("ignore", message=".*validation_step.*val_dataloader.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # TensorDataModule's way of saying "no validation data" under DDP.
    warnings.filterwarnings("ignore", message=".*Total length of `list` across ranks is zero.*")


def check_config(cfg: DictConfig) -> TrainConfig:
    """Build the dataclasses; their __post_init__ checks every value (ConfigError, one line)."""
    # `+key=value` can add keys at the top level, which the schema would silently drop.
    known = {f.name for f in fields(TrainConfig)}
    for key in cfg:
        if key not in known:
            raise ConfigError(
                f"{key}: not a key of the config; expected one of {', '.join(sorted(known))} "
                "(new keys go under tags: +tags.owner=me)"
            )
    settings = OmegaConf.to_object(cfg)
    assert isinstance(settings, TrainConfig)
    return settings


def resolve_accelerator(device: DeviceConfig) -> str:
    if device.accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError(
            f"device=gpu: CUDA is not available on this machine (torch {torch.__version__}); "
            "expected device=cpu or device=auto"
        )
    if device.accelerator == "auto":
        if torch.cuda.is_available():
            return "gpu"
        print("device=auto: no GPU found, training on the CPU")
        return "cpu"
    if device.accelerator == "cpu" and device.precision == "16-mixed":
        raise ConfigError(
            "device.precision='16-mixed' needs a GPU; expected bf16-mixed, 32 or 64 on the CPU"
        )
    return device.accelerator


def run_tags(
    settings: TrainConfig, accelerator: str, sweep_job: SweepJob | None = None
) -> dict[str, str]:
    tags = {"mlflow.source.name": "trainlab-train", "trainlab.engine": settings.engine.name}
    tags["trainlab.device"] = accelerator
    tags["trainlab.precision"] = settings.device.precision
    if distributed.world_size(settings.device) > 1:
        tags["trainlab.strategy"] = distributed.choose_strategy(settings.device)
    if HydraConfig.initialized():
        tags["trainlab.preset"] = str(HydraConfig.get().runtime.choices.get("experiment") or "none")
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if sweep_job is not None:  # a job of a multirun: a child of the sweep's parent run
        tags.update(sweep_job.tags())
    tags.update({str(k): str(v) for k, v in settings.tags.items()})
    return tags


# engine=NAME -> fit(settings, module, data, accelerator, run, ols_loss) -> optimizer steps taken
ENGINES = {"lightning": fit_lightning, "autograd": fit_autograd, "numpy": fit_numpy}


def final_losses(module: RegressionModule, data: Dataset) -> dict[str, float]:
    """Loss over the whole training (and validation) set with the trained weights."""
    module = module.to("cpu")
    with torch.no_grad():
        losses = {"final/train_loss": module.loss(module(data.x_train), data.y_train).item()}
        if data.x_val is not None:
            losses["final/val_loss"] = module.loss(module(data.x_val), data.y_val).item()
    return losses


def run(cfg: DictConfig) -> float:
    """One job; returns the objective for sweepers (final val loss, else final train loss)."""
    quiet_libraries()
    uri = cfg.tracking.uri or paths.tracking_uri()
    resume_from = None
    if cfg.get("resume"):
        check_store(uri)
        cfg, resume_from = plan_resume(cfg, uri, task_overrides(), paths.output_dir())
    settings = check_config(cfg)
    data = load_dataset(settings.data, settings.seed)
    dtype = torch.float64 if settings.device.precision == "64" else torch.float32
    data = data.cast(dtype)
    check_engine(settings, len(data.x_train))
    x_test = parse_x_test(settings.x_test, data.n_features)
    accelerator = resolve_accelerator(settings.device)
    distributed.check_sharding(
        settings.device, settings.data.batch_size, len(data.x_train), settings.optimizer
    )
    tracking_process = distributed.is_tracking_process(settings.device)
    if not tracking_process:
        # An extra DDP process (rank > 0) of this job: rank 0 prints and tracks for all.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of this process

    experiment_name, run_name = settings.experiment_name, settings.run_name
    sweep_job = current_job()
    if sweep_job is not None:  # children live beside their parent, whatever the job's config says
        uri, experiment_name = sweep_job.sweep.tracking_uri, sweep_job.sweep.experiment_name
        run_name = run_name or sweep_job.run_name()

    with handle_interrupts() as interrupts:
        tracked = (
            open_run(
                uri,
                experiment_name,
                run_name,
                run_tags(settings, accelerator, sweep_job),
                settings.tracking.flush_every_seconds,
                run_id=resume_from.run_id if resume_from else None,
            )
            if settings.tracking.enabled and tracking_process
            else nullcontext()
        )
        # Each engine prints its note's way: note 20 (Lightning) .3f, notes 17/18 the float.
        spec = " .3f" if settings.engine.name == "lightning" else " .7g"
        model_uri = None
        # The plots are drawn when the block ends, also when it fails, before the run's status
        # is set.
        with (
            tracked as mlflow_run,
            plots_at_end(mlflow_run, data, settings.tracking.plots) as plotted,
            report_interrupt(interrupts) as report,
        ):
            report.run = mlflow_run
            # Seeded after the run exists: MLflow draws its random run names from `random` too.
            L.seed_everything(settings.seed, verbose=False)
            module = plotted.network = build_module(cfg, data).to(dtype)
            x_model = data.scale(x_test.to(dtype)) if x_test is not None else None
            # A resumed run has its `pred/before` already; its weights come with the checkpoint.
            before = predict(module, x_model) if resume_from is None else None
            if before is not None:
                print(f"Prediction before training: {format_prediction(x_test, before, spec)}")
            ols_loss = ols_reference(settings, data)  # the least-squares optimum (MSE runs only)
            if mlflow_run is not None:
                record_start(mlflow_run, cfg, before, ols_loss, resume_from)
            report.module = module
            if settings.engine.name == "lightning":
                report.checkpoint = LastCheckpoint(paths.output_dir() / "checkpoints", mlflow_run)
                steps = fit_lightning(
                    settings, module, data, accelerator, mlflow_run, ols_loss,
                    interrupts=interrupts, resume_from=resume_from, checkpoint=report.checkpoint,
                )  # fmt: skip
            else:
                fit = ENGINES[settings.engine.name]
                steps = fit(settings, module, data, accelerator, mlflow_run, ols_loss)
            report.steps = steps
            interrupts.raise_if_received()  # the fit stopped early for a signal: KILLED
            after = predict(module, x_model)
            losses = final_losses(module, data)
            if mlflow_run is not None:
                metrics = dict(losses)
                if after is not None:
                    metrics.update(prediction_metrics(after, "pred/after"))
                mlflow_run.log_metrics(metrics, step=max(steps - 1, 0))
                if settings.tracking.log_model:
                    model_uri = log_trained_model(
                        mlflow_run, module.model, data, settings.tracking, max(steps - 1, 0)
                    )
    if x_test is not None:
        print(f"Prediction after training: {format_prediction(x_test, after, spec)}")
    print(f"Final training loss: {losses['final/train_loss']:.6g}")
    if ols_loss is not None:
        print(
            f"Least-squares optimum: {ols_loss:.6g} (gap {losses['final/train_loss'] - ols_loss:.3g})"
        )
    if mlflow_run is not None:
        report_run(uri, mlflow_run, model_uri)
    return losses.get("final/val_loss", losses["final/train_loss"])


def record_start(
    run: MlflowRun,
    cfg: DictConfig,
    before: torch.Tensor | None,
    ols_loss: float | None,
    resume_from: ResumePoint | None,
) -> None:
    """Config and first metrics, logged before training so that an interrupted run keeps them."""
    if resume_from is not None:  # the run has them already
        print(f"Resuming run {resume_from.run_id} at step {resume_from.step}")
        run.set_tags({"trainlab.resumed_at_step": resume_from.step})
        return
    first = {"ols/loss": ols_loss} if ols_loss is not None else {}
    if before is not None:
        first.update(prediction_metrics(before, "pred/before"))
    run.log_metrics(first, step=0)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    run.log_params(flatten(resolved))
    run.log_dict(resolved, "config/resolved.yaml")
    run.log_dict({"overrides": task_overrides()}, "config/overrides.yaml")


def predict(module: RegressionModule, x: torch.Tensor | None) -> torch.Tensor | None:
    if x is None:
        return None
    with torch.no_grad():
        return module.to("cpu")(x)


def prediction_metrics(pred: torch.Tensor, prefix: str) -> dict[str, float]:
    """`pred/after` for one prediction, `pred/after/<row>_<target>` for several."""
    if pred.numel() == 1:
        return {prefix: pred.item()}
    return {
        f"{prefix}/{r}_{t}": v for r, row in enumerate(pred.tolist()) for t, v in enumerate(row)
    }


def task_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def report_run(uri: str, mlflow_run: MlflowRun, model_uri: str | None = None) -> None:
    run = mlflow_run.client.get_run(mlflow_run.run_id)
    print(
        f"MLflow run {run.info.run_id} ({run.info.run_name}) in experiment {run.info.experiment_id}, store {uri}"
    )
    page = f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    if uri.startswith(("http://", "https://")):  # a tracking server is its own dashboard
        print(f"Dashboard: {uri.rstrip('/')}/{page}")
    else:
        print(f"Dashboard: `make ui`, then open http://127.0.0.1:5000/{page}")
    if model_uri is not None:
        print(f"Model {model_uri}; predict with: trainlab-predict {run.info.run_id} <x> ...")
