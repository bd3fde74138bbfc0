"""The evaluation run `trainlab-evaluate` records (MLflow's side of it).

In the evaluated run's experiment: its scores (linked to the logged model, so that the model's
page lists them), the evaluation plots, the file as a dataset input with the model as an input
too, and tags naming the run and model it evaluated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from mlflow.entities import LoggedModelInput, Metric, RunTag
from mlflow.tracking import MlflowClient

from trainlab.data.lineage import DataRecord
from trainlab.recorder import held_out as scoring
from trainlab.recorder.dataset_inputs import dataset_input
from trainlab.recorder.mlflow_store import open_client
from trainlab.recorder.plots import log_figures
from trainlab.tracking.payloads import Evaluation

EVALUATED_RUN_TAG = "trainlab.evaluation_of"
EVALUATED_MODEL_TAG = "trainlab.evaluated_model"


@dataclass(frozen=True)
class Recorded:
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    warnings: list[str]


def logged_model_id(client: MlflowClient, run_id: str, model: Any) -> str | None:
    """The id of the run's logged model (its output)."""
    found = getattr(model.metadata, "model_id", None)
    if found:
        return found
    outputs = client.get_run(run_id).outputs
    models = outputs.model_outputs if outputs else []
    return models[0].model_id if models else None


def record(
    store: str, run_id: str, model: Any, evaluation: Evaluation, source: DataRecord, prefix: str
) -> Recorded:
    client = open_client(store)
    evaluated = client.get_run(run_id)
    model_id = logged_model_id(client, run_id, model)
    name = f"evaluate {evaluated.info.run_name or run_id[:8]} on {source.name}"
    tags = {
        EVALUATED_RUN_TAG: run_id,
        EVALUATED_MODEL_TAG: f"models:/{model_id}" if model_id else f"runs:/{run_id}/model",
        "mlflow.source.name": "trainlab-evaluate",
    }
    run = client.create_run(evaluated.info.experiment_id, run_name=name, tags=tags)
    new_id = run.info.run_id
    try:
        metrics, notes = scoring.scores(evaluation, prefix)
        now = int(time.time() * 1000)
        client.log_batch(
            new_id, metrics=[Metric(k, v, now, 0, model_id=model_id) for k, v in metrics.items()]
        )
        models = [LoggedModelInput(model_id)] if model_id else None
        client.log_inputs(new_id, datasets=[dataset_input(source)], models=models)
        log_figures(client, new_id, scoring.figures(evaluation), "plots")
        client.log_batch(new_id, tags=[RunTag("trainlab.evaluation.rows", str(source.rows))])
    except BaseException:
        client.set_terminated(new_id, "FAILED")
        raise
    client.set_terminated(new_id, "FINISHED")
    return Recorded(
        run_id=new_id, model_uri=tags[EVALUATED_MODEL_TAG], metrics=metrics, warnings=notes
    )
