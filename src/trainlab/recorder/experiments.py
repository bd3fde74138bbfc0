"""Where a run goes in MLflow and how its values fit MLflow's limits: the experiment (created
once, in an artifact folder of its own name), params and tags cut to the lengths MLflow takes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlflow.entities import Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from trainlab.errors import ConfigError

MAX_PARAM_VALUE_CHARS = 6000
MAX_KEY_CHARS = 250
MAX_TAG_CHARS = 5000


def safe_folder_name(name: str) -> str:
    """A user-given name as one folder name that cannot climb out of its parent."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".")
    return cleaned or "experiment"


def experiment_id(client: MlflowClient, name: str, artifact_root: str | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None and experiment.lifecycle_stage == "deleted":
        # MLflow refuses runs in it, and its name stays taken until it is purged.
        raise ConfigError(
            f"experiment_name={name!r}: that experiment was deleted; expected another name, or "
            f"restore it first (mlflow experiments restore --experiment-id {experiment.experiment_id})"
        )
    if experiment is not None:
        return experiment.experiment_id
    location = (Path(artifact_root) / safe_folder_name(name)).as_uri() if artifact_root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Processes started together race to create it: the loser uses the winner's.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def as_params(values: dict[str, Any]) -> list[Param]:
    return [Param(k[:MAX_KEY_CHARS], str(v)[:MAX_PARAM_VALUE_CHARS]) for k, v in values.items()]


def as_tags(values: dict[str, Any]) -> list[RunTag]:
    return [RunTag(k[:MAX_KEY_CHARS], str(v)[:MAX_TAG_CHARS]) for k, v in values.items()]
