"""The path of one run: checked config -> data -> model -> fit (recorded) -> report.

`run` reads top to bottom as the recipe; each step is a call into the layer that owns it. It
takes the checked config (`settings`) and where its run goes (`target`, decided by the caller:
a single run or a sweep job); it imports torch and Lightning, so the entry imports it only once
the config has passed its checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate

from trainlab.callbacks.checkpoint_saver import ranking_metric
from trainlab.config.checks import check_with_data, parse_x_test
from trainlab.config.runtime import DeviceConfig
from trainlab.config.schema import TrainConfig
from trainlab.data.dataset import Dataset
from trainlab.data.sources import load_dataset
from trainlab.engines.base import FitContext, ResumePoint
from trainlab.engines.console import format_prediction
from trainlab.engines.ranks import is_tracking_process
from trainlab.engines.reference import ols_reference
from trainlab.engines.trajectory import row_keys
from trainlab.errors import ConfigError
from trainlab.logs import quiet_libraries
from trainlab.models.module import RegressionModule, build_module
from trainlab.paths import output_dir
from trainlab.recording import Ending, run_session
from trainlab.signals import handle_interrupts
from trainlab.tracking.client import TrackingTarget
from trainlab.tracking.messages import RunInfo
from trainlab.tracking.store import dashboard_line


def run(
    settings: TrainConfig, target: TrackingTarget | None, resume_from: ResumePoint | None = None
) -> float:
    """One job; returns the objective for sweepers (final val loss, else final train loss)."""
    quiet_libraries()
    with handle_interrupts() as interrupts, run_session(target, settings) as session:
        accelerator = resolve_accelerator(settings.device)
        data = load_data(settings)
        module = new_module(settings, data)
        x_test = prediction_rows(settings, data)
        before = predict(module, data, x_test) if resume_from is None else None
        ols_loss = ols_reference(settings, data)
        ranked_by = check_with_reference(settings, module, ols_loss, data)
        run = session.open(accelerator, data, module, first_metrics(before, ols_loss), resume_from)
        print_before(settings, x_test, before)
        context = FitContext(
            settings=settings,
            data=data,
            module=module,
            accelerator=accelerator,
            run=run,
            interrupts=interrupts,
            checkpoint_dir=checkpoint_folder(resume_from),
            ranking_metric=ranked_by,
            ols_loss=ols_loss,
            resume_from=resume_from,
        )
        result = instantiate(settings.engine, _convert_="all").fit(context)
        interrupts.raise_if_received(result.steps, result.checkpoint)  # the run ends KILLED
        after = predict(module, data, x_test)
        losses = final_losses(module, data)
        predicted = prediction_metrics(after, "pred/after") if after is not None else {}
        info = session.finish(Ending(result.steps, {**losses, **predicted}, module))
    if is_tracking_process(settings.device):
        print_outcome(settings, x_test, after, losses, ols_loss, info)
    return losses.get("final/val_loss", losses["final/train_loss"])


def load_data(settings: TrainConfig) -> Dataset:
    """The rows in the run's dtype, checked against what the config asks of them."""
    dtype = torch.float64 if settings.device.precision == "64" else torch.float32
    data = load_dataset(settings.data, settings.seed).cast(dtype)
    check_with_data(settings, len(data.x_train), data.n_features)
    return data


def new_module(settings: TrainConfig, data: Dataset) -> RegressionModule:
    """The module, built after seeding (its first weights follow `seed`), in the data's dtype."""
    L.seed_everything(settings.seed, verbose=False)
    module = build_module(settings, data.n_features, data.n_targets, data.x_val is not None)
    return module.to(data.x_train.dtype)


def print_before(settings: TrainConfig, x_test: torch.Tensor | None, before: Any) -> None:
    # The other ranks of a DDP job (SLURM tasks, torchrun, Lightning's launcher) train
    # silently: one job, one set of lines.
    if before is not None and is_tracking_process(settings.device):
        print(f"Prediction before training: {format_prediction(x_test, before, spec(settings))}")


def check_with_reference(
    settings: TrainConfig, module: RegressionModule, ols_loss: float | None, data: Dataset
) -> str:
    """What can only be checked once the data and the least-squares reference exist, before the
    MLflow run opens: early_stop.ols_gap needs the reference, checkpoint.monitor a metric this
    run records (returned: what the best checkpoints are ranked by)."""
    if settings.early_stop.ols_gap is not None and ols_loss is None:
        raise ConfigError(
            f"early_stop.ols_gap={settings.early_stop.ols_gap}: the training set is too large "
            "for the least-squares reference; expected early_stop.ols_gap=null (or fewer rows)"
        )
    tracking = settings.tracking
    keys = row_keys(module, tracking.trajectory_limit, ols_loss, tracking.grad_norm)
    return ranking_metric(settings.checkpoint, keys, data.x_val is not None)


def checkpoint_folder(resume_from: ResumePoint | None) -> Path:
    if resume_from is not None and resume_from.checkpoint_dir is not None:
        return resume_from.checkpoint_dir
    return output_dir() / "checkpoints"


def resolve_accelerator(device: DeviceConfig) -> str:
    if device.accelerator == "gpu" and not torch.cuda.is_available():
        raise ConfigError(
            f"device=gpu: CUDA is not available on this machine (torch {torch.__version__}); "
            "expected device=cpu or device=auto"
        )
    gpus = torch.cuda.device_count()
    if device.accelerator == "gpu" and device.devices > gpus:
        # Lightning would say so only once the run exists.
        raise ConfigError(
            f"device.devices={device.devices}: this machine has {gpus} GPU(s); expected "
            f"device.devices <= {gpus}"
        )
    if device.accelerator == "auto":
        if torch.cuda.is_available():
            return "gpu"
        print("device=auto: no GPU found, training on the CPU")
        return "cpu"
    return device.accelerator


def prediction_rows(settings: TrainConfig, data: Dataset) -> torch.Tensor | None:
    """`x_test` (the rows predicted before and after training) as an (n, n_features) tensor."""
    if settings.x_test is None:
        return None
    rows = parse_x_test(settings.x_test, data.n_features)
    return torch.tensor(rows, dtype=data.x_train.dtype)


def predict(module: RegressionModule, data: Dataset, x: torch.Tensor | None) -> torch.Tensor | None:
    """The model's output for raw input rows (scaled as the training rows were)."""
    if x is None:
        return None
    with torch.no_grad():
        return module.to("cpu")(data.scale(x))


def first_metrics(before: torch.Tensor | None, ols_loss: float | None) -> dict[str, float]:
    metrics = {"ols/loss": ols_loss} if ols_loss is not None else {}
    return {**metrics, **(prediction_metrics(before, "pred/before") if before is not None else {})}


def prediction_metrics(pred: torch.Tensor, prefix: str) -> dict[str, float]:
    """`pred/after` for one prediction, `pred/after/<row>_<target>` for several."""
    if pred.numel() == 1:
        return {prefix: pred.item()}
    return {
        f"{prefix}/{r}_{t}": v for r, row in enumerate(pred.tolist()) for t, v in enumerate(row)
    }


def final_losses(module: RegressionModule, data: Dataset) -> dict[str, float]:
    """Loss over the whole training (and validation) set with the trained weights."""
    module = module.to("cpu")
    with torch.no_grad():
        losses = {"final/train_loss": module.loss(module(data.x_train), data.y_train).item()}
        if data.x_val is not None:
            losses["final/val_loss"] = module.loss(module(data.x_val), data.y_val).item()
    return losses


def spec(settings: TrainConfig) -> str:
    """Each engine prints its note's way: note 20 (Lightning) .3f, notes 17/18 the whole float."""
    return " .3f" if settings.engine.name == "lightning" else " .7g"


def print_outcome(
    settings: TrainConfig,
    x_test: torch.Tensor | None,
    after: torch.Tensor | None,
    losses: dict[str, float],
    ols_loss: float | None,
    info: RunInfo | None,
) -> None:
    if x_test is not None and after is not None:
        print(f"Prediction after training: {format_prediction(x_test, after, spec(settings))}")
    print(f"Final training loss: {losses['final/train_loss']:.6g}")
    if ols_loss is not None:
        gap = losses["final/train_loss"] - ols_loss
        print(f"Least-squares optimum: {ols_loss:.6g} (gap {gap:.3g})")
    if info is None:
        return
    print(
        f"MLflow run {info.run_id} ({info.run_name}) in experiment {info.experiment_id}, store {info.uri}"
    )
    print(dashboard_line(info.uri, info.experiment_id, info.run_id))
    if info.model_uri is not None:
        print(f"Model {info.model_uri}; predict with: trainlab-predict {info.run_id} <x> ...")
    for line in info.verification:
        print(line)
    for warning in info.warnings:
        print(f"trainlab-train: warning: {warning}")
