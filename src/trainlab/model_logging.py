"""The trained model as an MLflow model of the run: raw inputs in, predictions out.

The network was trained on standardized inputs; the logged model carries that standardization
(mean and std as buffers in front of the network), so `trainlab-predict RUN 5` and
`mlflow.pyfunc.load_model(...).predict(...)` take the numbers a person types.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from trainlab.data import Dataset
from trainlab.schema import TrackingConfig
from trainlab.tracking import MlflowRun

MODEL_NAME = "model"  # runs:/<run_id>/model


class StandardizedModel(nn.Module):
    """`model((x - mean) / std)`: the trained network behind the scaling it was trained with."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def raw_inputs(data: Dataset, x: torch.Tensor) -> torch.Tensor:
    """Standardized inputs back to the numbers the data source gave."""
    if data.x_mean is None or data.x_std is None:
        return x
    return x * data.x_std + data.x_mean


def servable_model(network: nn.Module, data: Dataset) -> StandardizedModel:
    """A CPU copy of the trained network with the data's standardization (identity when off)."""
    network = network.to("cpu")
    dtype = next(network.parameters()).dtype
    ones = torch.ones(data.n_features, dtype=dtype)
    mean = data.x_mean.to(dtype) if data.x_mean is not None else torch.zeros_like(ones)
    std = data.x_std.to(dtype) if data.x_std is not None else ones
    return StandardizedModel(network, mean.clone(), std.clone()).eval()


def input_example(data: Dataset) -> torch.Tensor:
    """A few raw training rows; at least two, so that torch.export keeps the batch size free."""
    rows = raw_inputs(data, data.x_train[:5].to("cpu"))
    return rows if len(rows) > 1 else rows.repeat(2, 1)


def pip_requirements() -> list[str]:
    """Given explicitly: MLflow's own inference starts a subprocess that costs ~6 s a model."""
    import mlflow

    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]


@contextmanager
def fluent_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (which log_model uses) at `uri` for one call, then undo it.

    `mlflow.set_tracking_uri` also writes MLFLOW_TRACKING_URI into os.environ; left there, the
    next job in this process (a sweep) would send its runs to this store whatever its config.
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def log_trained_model(
    run: MlflowRun, network: nn.Module, data: Dataset, tracking: TrackingConfig, step: int
) -> str:
    """Log the model (pt2, signature, input example) to `run`; register it when asked.

    Returns the model's URI (models:/<model_id>). `step` links the run's final metrics to it.
    """
    import mlflow.pytorch
    from mlflow.models import infer_signature

    run.sink.flush()  # log_model links the run's metrics at `step` to the model: send them first
    model = servable_model(network, data)
    example = input_example(data).to(model.mean.dtype)
    with torch.no_grad():
        signature = infer_signature(example.numpy(), model(example).numpy())
    # Created here, in the run's experiment: log_model without a fluent active run would put it
    # in the Default experiment, whose artifacts land in ./mlruns under the current folder.
    record = run.client.get_run(run.run_id)
    logged = run.client.create_logged_model(
        experiment_id=record.info.experiment_id,
        name=MODEL_NAME,
        source_run_id=run.run_id,
        params=record.data.params,
        tags={"mlflow.source.name": "trainlab-train"},
    )
    with fluent_tracking_uri(run.client.tracking_uri):
        info = mlflow.pytorch.log_model(
            model,
            name=MODEL_NAME,
            signature=signature,
            input_example=example.numpy(),
            pip_requirements=pip_requirements(),
            registered_model_name=tracking.register,
            # trainlab-predict matches CSV columns by these names and labels its output with them.
            metadata={"feature_names": data.feature_names, "target_names": data.target_names},
            run_id=run.run_id,  # explicit: no fluent active run to start, end or leak
            model_id=logged.model_id,
            step=step,
        )
    if tracking.register and info.registered_model_version is not None:
        run.client.set_registered_model_alias(
            tracking.register, tracking.alias, str(info.registered_model_version)
        )
    return info.model_uri
