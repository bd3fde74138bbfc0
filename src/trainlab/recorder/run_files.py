"""A run's first files: its config documents (`config/resolved.yaml`, `config/overrides.yaml`)
as YAML and its environment as text (`environment/requirements.txt` ...), written in one folder
and one `log_artifacts` when the run starts, and again by recorder/lost_files.py when they were
lost while it ran."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from mlflow.tracking import MlflowClient

REQUIREMENTS = "environment/requirements.txt"


def log_files(
    client: MlflowClient, run_id: str, documents: dict[str, Any], texts: dict[str, str]
) -> None:
    """The run's first files (its config documents as YAML, the environment as text) in one
    folder and one `log_artifacts`: MLflow looks the run's artifact location up once per call,
    a noticeable part of a short job's recorder time per file. A document is dumped the way
    `MlflowClient.log_dict` dumps a `.yaml` file."""
    # libyaml's emitter (plain data only: the documents are dicts, lists and scalars) writes
    # what the pure-Python one writes, at a fraction of its time.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    dumped = {
        name: yaml.dump(doc, Dumper=dumper, indent=2, default_flow_style=False)
        for name, doc in documents.items()
    }
    with tempfile.TemporaryDirectory(prefix="trainlab-start-") as folder:
        for artifact_file, text in {**texts, **dumped}.items():
            path = Path(folder, artifact_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        client.log_artifacts(run_id, folder)
