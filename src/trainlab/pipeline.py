"""The path of one run: checked config -> data -> model -> fit (recorded) -> report.

`run` reads top to bottom as the recipe; each step is a call into the layer that owns it. It
takes the checked config (`settings`) and where its run goes (`target`, decided by the caller:
a single run or a sweep job); it imports torch and Lightning, so the entry imports it only once
the config has passed its checks.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch

from trainlab.callbacks.checkpoint_writer import ranking_metric
from trainlab.callbacks.fork_start import check_fits
from trainlab.checkpoints.trust import trusted_globals
from trainlab.config.checks import check_with_data
from trainlab.config.construct import construct
from trainlab.config.runtime import DeviceConfig
from trainlab.config.schema import TrainConfig, as_plain_dict
from trainlab.config.training import task_of
from trainlab.data.dataset import Dataset
from trainlab.data.sources import load_dataset
from trainlab.engines.base import FitContext, FitResult, ResumePoint, StudyTrial
from trainlab.engines.ranks import is_tracking_process
from trainlab.errors import ConfigError
from trainlab.job_result import JobResult
from trainlab.logs import quiet_libraries
from trainlab.measures.references import References, references
from trainlab.measures.trajectory import RowSpec, row_keys
from trainlab.models.build import build_module, is_linear_model, loss_of, output_size
from trainlab.models.lightning_module import TrainlabModule
from trainlab.outcome import (
    final_losses,
    first_metrics,
    objective_of,
    predict,
    prediction_metrics,
    prediction_rows,
    print_before,
    print_outcome,
)
from trainlab.paths import output_dir
from trainlab.run_life import Ending, run_session
from trainlab.signals import handle_interrupts
from trainlab.sweeps.trials import current_trial
from trainlab.tracking.connection import TrackingTarget


def run(
    settings: TrainConfig, target: TrackingTarget | None, resume_from: ResumePoint | None = None
) -> JobResult:
    """One job: its objective for sweepers (sweep.objective; by default the final val loss,
    else the final train loss) and its record."""
    quiet_libraries()
    speaks = is_tracking_process(settings.device)  # DDP ranks > 0 train silently
    with handle_interrupts() as interrupts, run_session(target, settings) as session:
        accelerator = resolve_accelerator(settings.device)
        data = load_data(settings)
        module = new_module(settings, data)
        x_test = prediction_rows(settings, data)
        before = predict(module, data, x_test) if resume_from is None else None
        rows = row_spec(settings, data, module, speaks)
        ranked_by = check_before_open(settings, module, rows, data, resume_from)
        run = session.open(
            accelerator, data, module, first_metrics(before, rows.references), resume_from
        )
        if before is not None and speaks:
            print_before(settings, data, x_test, before)
        ended = partial(outcome, settings, data, module, x_test)
        context = FitContext(
            settings=settings, data=data, module=module, accelerator=accelerator, run=run,
            interrupts=interrupts, checkpoint_dir=checkpoint_folder(resume_from),
            ranking_metric=ranked_by, rows=rows, resume_from=resume_from, after_fit=ended,
            trial=study_trial(),
        )  # fmt: skip
        result = construct(settings.engine).fit(context)
        interrupts.raise_if_received(result.steps, result.checkpoint)  # the run ends KILLED
        after, losses, predicted = result.after or ended(result)
        info = session.finish(Ending(result.steps, {**losses, **predicted}, module))
    if speaks:
        print_outcome(settings, data, x_test, after, losses, rows.references, info)
    final = {**losses, **predicted, **(info.metrics if info is not None else {})}
    objective = objective_of(settings.sweep, final, result.logged)
    return JobResult(objective=objective, config=as_plain_dict(settings), metrics=final, info=info)


def outcome(
    settings: TrainConfig,
    data: Dataset,
    module: L.LightningModule,
    x_test: Any,
    result: FitResult,
) -> tuple[Any, dict[str, float], dict[str, float]]:
    """What the trained module predicts for `x_test`, its final losses and the predictions'
    metrics (the Lightning engine computes it while the recorder commits its last checkpoint)."""
    after = predict(module, data, x_test)
    losses = final_losses(module, data, loss_of(settings, module), result.logged)
    return after, losses, prediction_metrics(after, "pred/after") if after is not None else {}


def load_data(settings: TrainConfig) -> Dataset:
    """The rows in the run's dtype, checked against what the config asks of them; a
    datamodule's batches are what it gives (checked against the model when it is built)."""
    data = load_dataset(settings.data, settings.seed, task_of(settings.loss))
    if data.datamodule is not None:
        return data
    data = data.cast(run_dtype(settings))
    check_with_data(settings, len(data.x_train), data.n_features)
    return data


def run_dtype(settings: TrainConfig) -> torch.dtype:
    return torch.float64 if settings.device.precision == "64" else torch.float32


def new_module(settings: TrainConfig, data: Dataset) -> L.LightningModule:
    """The module, built after seeding (its first weights follow `seed`), in the run's dtype,
    its output checked against the targets on two rows."""
    L.seed_everything(settings.seed, verbose=False)
    module = build_module(settings, data).to(run_dtype(settings))
    if isinstance(module, TrainlabModule):
        check_output(module, data, output_size(settings, data))
    return module


def check_output(module: L.LightningModule, data: Dataset, width: int) -> None:
    """One line before the run opens when the model's output cannot match the targets. A model
    whose forward raises is left to the fit, where the run records its traceback."""
    assert data.x_train is not None  # trainlab's module trains on (inputs, targets) pairs
    rows = data.x_train[:2]
    try:
        with torch.no_grad():
            shape = tuple(module(rows).shape)
    except Exception:
        return
    if shape != (len(rows), width):
        name = type(getattr(module, "model", module)).__name__
        raise ConfigError(
            f"model: {name} gives an output of shape {shape} for {len(rows)} rows; expected "
            f"({len(rows)}, {width}): one value per {'class' if data.classes else 'target'}"
        )


def row_spec(
    settings: TrainConfig, data: Dataset, module: L.LightningModule, speaks: bool
) -> RowSpec:
    """What each step's row holds: the references a linear model is measured against (said
    once when there is none to compare with), a norm per tensor for other models."""
    linear = is_linear_model(module)
    refs = references(settings, data) if linear else References()
    if refs.note is not None and speaks:
        print(f"trainlab-train: note: {refs.note}")
    tracking = settings.tracking
    return RowSpec(
        trajectory_limit=tracking.trajectory_limit,
        references=refs,
        grad_norm=tracking.grad_norm,
        norms_per_tensor=not linear,
    )


def check_before_open(
    settings: TrainConfig,
    module: L.LightningModule,
    rows: RowSpec,
    data: Dataset,
    resume_from: ResumePoint | None,
) -> str:
    """What can only be checked once the data and the references exist, before the MLflow run
    opens: a resumed checkpoint rebuilds only classes the run's config names (and a fork's fits
    its model), early_stop.ols_gap needs the least-squares reference, checkpoint.monitor a
    metric this run records (returned: what the best checkpoints are ranked by)."""
    if resume_from is not None and resume_from.fork is not None:  # its model takes the weights
        check_fits(module, resume_from, as_plain_dict(settings))
    elif resume_from is not None and resume_from.checkpoint is not None:
        where = f"resume={resume_from.run_id}"
        trusted_globals(resume_from.checkpoint, as_plain_dict(settings), where)
    if settings.early_stop.ols_gap is not None and rows.references.ols_loss is None:
        raise ConfigError(
            f"early_stop.ols_gap={settings.early_stop.ols_gap}: there is no least-squares "
            "reference for this run (a linear model on loss=mse, at most 10 million training "
            "values); expected early_stop.ols_gap=null"
        )
    validated = data.x_val is not None or data.val_sample is not None
    if not isinstance(module, TrainlabModule):  # a module of the user's logs what it logs
        default = "val/loss" if validated else "train/loss"
        return settings.checkpoint.monitor or default
    check_watched(settings.early_stop.monitor, module, rows, validated)
    return ranking_metric(settings.checkpoint, row_keys(module, rows), validated)


def check_watched(
    monitor: str | None, module: TrainlabModule, rows: RowSpec, validated: bool
) -> None:
    """early_stop.monitor names a metric trainlab's own module records (a module of the user's
    may log any: Lightning's EarlyStopping says when it never did)."""
    if monitor is None:
        return
    names = [*row_keys(module, rows), *(["val/loss"] if validated else [])]
    for collection in (
        getattr(module, "train_metrics", None),
        getattr(module, "val_metrics", None),
    ):
        names += list(collection.keys()) if collection is not None else []
    if monitor not in names:
        raise ConfigError(
            f"early_stop.monitor={monitor!r}: this run records no such metric; expected one of "
            f"{', '.join(names[:12])}{' ...' if len(names) > 12 else ''}"
        )


def study_trial() -> StudyTrial | None:
    """This job's trial when it is one of an Optuna sweep, opened in its study."""
    trial_job = current_trial()
    if trial_job is None:
        return None
    # Optuna and SQLAlchemy (slow imports) only for a trial of a search.
    from trainlab.sweeps.study import TrialHandle

    return TrialHandle(trial_job)


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
