"""The path of one run: checked config -> data -> model -> fit (tracked) -> report.

Read top to bottom, `run` is the recipe; everything it calls lives in one module per idea.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from trainlab import distributed, paths
from trainlab.console import ConsolePrinter, format_prediction
from trainlab.data import Dataset, TensorDataModule, load_dataset, parse_x_test
from trainlab.engines import check_engine, fit_autograd, fit_numpy, ols_reference
from trainlab.module import RegressionModule
from trainlab.schema import ConfigError, DeviceConfig, TrainConfig
from trainlab.tracking import MlflowRun, TrackingCallback, flatten, git_commit, open_run

log = logging.getLogger("trainlab")


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


def output_dir() -> Path:
    """Hydra's output folder for this job (absolute), or one under home() without Hydra's CLI."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    folder = paths.home() / "outputs" / "compose"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_tags(settings: TrainConfig, accelerator: str) -> dict[str, str]:
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
    tags.update({str(k): str(v) for k, v in settings.tags.items()})
    return tags


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
) -> int:
    callbacks = [*distributed.callbacks(settings.device), ConsolePrinter(settings.print_every)]
    if run is not None:
        callbacks.append(TrackingCallback(run, settings.tracking.trajectory_limit, ols_loss))
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
        data, settings.data.batch_size, settings.data.shuffle, settings.seed
    )
    trainer.fit(module, datamodule=data_module)
    return distributed.steps_done(trainer)


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

    uri = settings.tracking.uri or paths.tracking_uri()
    tracked = (
        open_run(
            uri,
            settings.experiment_name,
            settings.run_name,
            run_tags(settings, accelerator),
            settings.tracking.flush_every_seconds,
        )
        if settings.tracking.enabled and tracking_process
        else nullcontext()
    )
    # Each engine prints its note's way: note 20 (Lightning) three decimals, notes 17/18 the float.
    spec = " .3f" if settings.engine.name == "lightning" else " .7g"
    with tracked as mlflow_run:
        # Seeded after the run exists: MLflow draws its random run names from `random` too.
        L.seed_everything(settings.seed, verbose=False)
        module = build_module(cfg, data).to(dtype)
        x_model = data.scale(x_test.to(dtype)) if x_test is not None else None
        before = predict(module, x_model)
        if x_test is not None:
            print(f"Prediction before training: {format_prediction(x_test, before, spec)}")
        if mlflow_run is not None:
            mlflow_run.log_params(flatten(OmegaConf.to_container(cfg, resolve=True)))
            mlflow_run.log_dict(OmegaConf.to_container(cfg, resolve=True), "config/resolved.yaml")
            mlflow_run.log_dict({"overrides": task_overrides()}, "config/overrides.yaml")
        ols_loss = ols_reference(settings, data)  # the least-squares optimum (MSE runs only)
        if mlflow_run is not None and ols_loss is not None:
            mlflow_run.log_metrics({"ols/loss": ols_loss}, step=0)
        fit = ENGINES[settings.engine.name]
        steps = fit(settings, module, data, accelerator, mlflow_run, ols_loss)
        after = predict(module, x_model)
        losses = final_losses(module, data)
        if mlflow_run is not None:
            metrics = dict(losses)
            if before is not None and after is not None:
                metrics.update(prediction_metrics(before, "pred/before"))
                metrics.update(prediction_metrics(after, "pred/after"))
            mlflow_run.log_metrics(metrics, step=max(steps - 1, 0))
    if x_test is not None:
        print(f"Prediction after training: {format_prediction(x_test, after, spec)}")
    print(f"Final training loss: {losses['final/train_loss']:.6g}")
    if ols_loss is not None:
        print(
            f"Least-squares optimum: {ols_loss:.6g} (gap {losses['final/train_loss'] - ols_loss:.3g})"
        )
    if mlflow_run is not None:
        report_run(uri, mlflow_run)
    return losses.get("final/val_loss", losses["final/train_loss"])


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


def report_run(uri: str, mlflow_run: MlflowRun) -> None:
    run = mlflow_run.client.get_run(mlflow_run.run_id)
    print(
        f"MLflow run {run.info.run_id} ({run.info.run_name}) in experiment {run.info.experiment_id}, store {uri}"
    )
    page = f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    if uri.startswith(("http://", "https://")):  # a tracking server is its own dashboard
        print(f"Dashboard: {uri.rstrip('/')}/{page}")
        return
    print(f"Dashboard: `make ui`, then open http://127.0.0.1:5000/{page}")
