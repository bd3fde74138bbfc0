"""The trainer's `DataRecord`s as MLflow dataset inputs of the run (recorder side).

Each record becomes a `MetaDataset` (MLflow's dataset of metadata only: the rows stay where they
are) with the trainer's digest, its source (a CSV's absolute path as a local source; a built-in
set as a code source naming it) and its columns as the schema; the row and column counts go into
the dataset's profile. `MlflowClient.log_inputs` links it to the run with the context tag
(`training` / `validation`), as `mlflow.log_input` does for a fluent run.
"""

from __future__ import annotations

import json
import time
import warnings

from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from trainlab.data.lineage import DataRecord


def source_of(record: DataRecord) -> DatasetSource:
    if record.source_type == "local":
        with warnings.catch_warnings():
            # MLflow registers its local-file source twice and says so on every resolve.
            warnings.simplefilter("ignore", UserWarning)
            return resolve_dataset_source(record.source)
    return CodeDatasetSource({"trainlab.data": record.source})


def dataset_input(record: DataRecord) -> DatasetInput:
    columns = [*record.features, *record.targets]
    # Data that is no table (images, sequences, dict batches) has tensors, not columns.
    schema = Schema([ColSpec(DataType.double, name) for name in columns]) if columns else None
    dataset = MetaDataset(source_of(record), record.name, record.digest, schema)
    profile = {
        "num_rows": record.rows,
        "num_columns": len(columns),
        "features": list(record.features),
        "targets": list(record.targets),
        **({"tensors": record.tensors} if record.tensors else {}),
    }
    entity = Dataset(**dataset.to_dict(), profile=json.dumps(profile))
    return DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, record.context)])


LINK_ATTEMPTS = 3


def link_inputs(client: MlflowClient, run_id: str, inputs: list[DatasetInput]) -> None:
    """`log_inputs`, tried again when it fails.

    MLflow's SQL store looks a dataset up by (experiment, name, digest) and inserts it when it is
    missing, without a lock: two runs that start on the same data at the same moment both insert,
    and the second fails on the unique key (seen on PostgreSQL with 4 jobs at a time). Its
    transaction is rolled back, and a second try finds the row the other run wrote and only links
    it. A failure that persists (permissions, a deleted run) is raised after the last try.
    """
    for attempt in range(1, LINK_ATTEMPTS + 1):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException:
            if attempt == LINK_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)
