"""A logged model read as data: what trainlab-predict and trainlab-evaluate load.

A model's artifacts are written by whoever can edit its experiment, and MLflow's own loader trusts
them whole: `mlflow.pyfunc.load_model` imports the `loader_module` its MLmodel names, puts the
model's `code/` folder on sys.path, runs a model-from-code file, and unpickles `model.pth` or a
pickled network. So trainlab never hands a model to it. The files are downloaded, MLmodel is read
as YAML, and only two forms load:

- the pytorch flavor in the pt2 format (torch.export's program): `mlflow.pytorch.load_model`
  with MLflow's switch `MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false`, under which MLflow refuses a
  pickled model and checks, before torch reads the archive, that every record of it is JSON,
  text or tensors that torch's `weights_only` unpickler admits;
- trainlab's classifier (recorder/served_classifier.py): its `network` artifact read the same way
  and its `classes.json`; the model's code file is never run;
- a model torch.export could not export, logged as its weights and the run's model config
  (models/weights.py, the pyfunc `loader_module` MLmodel names): rebuilt by trainlab's own module
  from the classes that config may name, its tensors read with `torch.load(weights_only=True)`;
  its model.json must also say what the model's run recorded as its `model.*` params (MLflow
  keeps a param's first value), so a config rewritten after the run cannot change what is built.

Anything else (a model logged pickled by an older trainlab, a model with code) loads only with
`trust_pickle` (`--trust-pickle`), through MLflow's own loader, as before.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.config.flat import flatten
from trainlab.models import weights
from trainlab.recorder.experiments import MAX_PARAM_VALUE_CHARS

PICKLE_SWITCH = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"  # MLflow's documented switch
TRUST_OPTION = "--trust-pickle"


class UntrustedModel(ValueError):
    """The model is not in a form that loads as data; the message is the one line said."""


@dataclass
class LoadedModel:
    """The model's MLmodel description and what answers: a network (loaded as data), or
    MLflow's pyfunc (only under --trust-pickle)."""

    metadata: Any  # mlflow.models.Model: signature, metadata, model_id
    network: Any = None
    classes: list[str] = field(default_factory=list)
    pyfunc: Any = None

    def predict(self, rows: np.ndarray) -> Any:
        """Raw inputs (any rank) -> the model's outputs; a classifier's as a table: `label` and
        one `probability_<class>` per class."""
        if self.pyfunc is not None:
            return self.pyfunc.predict(rows)
        import torch

        with torch.no_grad():
            output = self.network(torch.as_tensor(rows)).double().numpy()
        if not self.classes:
            return output
        import pandas as pd

        table = {"label": [self.classes[i] for i in output.argmax(axis=1)]}
        for k, name in enumerate(self.classes):
            table[f"probability_{name}"] = output[:, k]
        return pd.DataFrame(table)


@contextmanager
def pickle_switch(allowed: bool) -> Iterator[None]:
    """MLflow's pickle switch set for one load, then put back as the caller had it."""
    saved = os.environ.get(PICKLE_SWITCH)
    os.environ[PICKLE_SWITCH] = "true" if allowed else "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(PICKLE_SWITCH, None)
        else:
            os.environ[PICKLE_SWITCH] = saved


def load_logged_model(uri: str, trust_pickle: bool = False) -> LoadedModel:
    """The model at `uri` (runs:/ or models:/, resolved by MLflow's current tracking store)."""
    import mlflow.artifacts
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="trainlab-model-") as folder:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder))
        description = Model.load(str(local))
        problem = pickled_or_code(local, description)
        if problem is not None:
            if not trust_pickle:
                raise UntrustedModel(
                    f"{uri}: {problem}: loading it would run whatever code it holds; expected a "
                    f"model trainlab logged as pt2 (train it again), or {TRUST_OPTION} if you "
                    "trust everyone who can write to this store"
                )
            import mlflow.pyfunc

            with pickle_switch(True):
                return LoadedModel(description, pyfunc=mlflow.pyfunc.load_model(str(local)))
        data = weights_data(local, description)
        if data is not None:
            try:
                spec = weights.read_spec(data)
                as_recorded(description, spec["model"])
                network = weights.build(spec, weights.read_weights(data))
                classes = [str(c) for c in spec["classes"]]
            except weights.UnsafeWeights as err:
                raise UntrustedModel(
                    f"{uri}: {err}; expected the weights and config trainlab logged (train it "
                    "again)"
                ) from None
            return LoadedModel(description, network=network, classes=classes)
        with pickle_switch(False):
            if "pytorch" in description.flavors:
                return LoadedModel(description, network=pt2_network(uri, local))
            artifacts = classifier_artifacts(local, description)
            classes = json.loads((local / artifacts["classes"]).read_text())
            if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
                raise UntrustedModel(f"{uri}: classes.json is not a list of class names")
            network = pt2_network(uri, local / artifacts["network"])
            return LoadedModel(description, network=network, classes=classes)


def pickled_or_code(local: Path, description: Any) -> str | None:
    """Why the model cannot load as data, or None when it can."""
    flavors = description.flavors
    if "pytorch" in flavors:
        return pt2_problem(local, flavors["pytorch"])
    pyfunc = flavors.get("python_function", {})
    if pyfunc.get("loader_module") == weights.__name__:
        if pyfunc.get("code") or pyfunc.get("model_code_path"):
            return "it carries code of its own (a code/ folder)"
        if weights_data(local, description) is None:
            return "its weights are not a folder inside the model"
        return None
    artifacts = classifier_artifacts(local, description)
    if not artifacts:
        return "not a model trainlab logged (neither a pytorch model nor trainlab's classifier)"
    network = local / artifacts["network"]
    if not network.is_dir():
        return "its network is a pickle (logged by an older trainlab)"
    try:
        from mlflow.models import Model

        inner = Model.load(str(network))
    except Exception:
        return "its network is not an MLflow model"
    if "pytorch" not in inner.flavors:
        return "its network is not a pytorch model"
    return pt2_problem(network, inner.flavors["pytorch"])


def pt2_problem(folder: Path, flavor: dict[str, Any]) -> str | None:
    if flavor.get("code"):
        return "it carries code of its own (a code/ folder)"
    data = (folder / str(flavor.get("model_data", "data"))).resolve()
    if not data.is_relative_to(folder.resolve()):
        return "its model_data points outside the model"
    if (data / "model.pth").exists() or not (data / "model.pt2").is_file():
        return "it is pickled (model.pth), not torch.export's pt2 program"
    return None


def as_recorded(description: Any, model: dict[str, Any]) -> None:
    """The model config in model.json is the one its run recorded as params (the run's
    config/resolved.yaml, unlike its params, can be rewritten)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()  # the caller's store (commands/predict.py sets it)
    if not description.model_id:
        raise weights.UnsafeWeights("its MLmodel names no logged model, so no run to check it by")
    run_id = client.get_logged_model(description.model_id).source_run_id
    params = client.get_run(run_id).data.params if run_id else {}
    recorded = {k: v for k, v in params.items() if k.startswith("model.")}
    given = {k: str(v)[:MAX_PARAM_VALUE_CHARS] for k, v in flatten(model, "model").items()}
    if given != recorded:
        key = min(k for k in set(given) | set(recorded) if given.get(k) != recorded.get(k))
        raise weights.UnsafeWeights(
            f"its {weights.SPEC} says {key}={given.get(key, '(nothing)')} where its run "
            f"{run_id} recorded {recorded.get(key, '(nothing)')}, so it is not the config the "
            "model was trained with"
        )


def weights_data(local: Path, description: Any) -> Path | None:
    """The data folder of a model logged as weights and config (models/weights.py), or None."""
    pyfunc = description.flavors.get("python_function", {})
    if pyfunc.get("loader_module") != weights.__name__ or not pyfunc.get("data"):
        return None
    data = (local / str(pyfunc["data"])).resolve()
    return data if data.is_relative_to(local.resolve()) and data.is_dir() else None


def classifier_artifacts(local: Path, description: Any) -> dict[str, str]:
    """trainlab's classifier's two artifacts (paths inside the model), or {}."""
    config = description.flavors.get("python_function", {})
    found = {
        name: str((entry or {}).get("path", ""))
        for name, entry in (config.get("artifacts") or {}).items()
    }
    if set(found) != {"network", "classes"}:
        return {}
    for path in found.values():
        if not path or not (local / path).resolve().is_relative_to(local.resolve()):
            return {}
    return found


def pt2_network(uri: str, folder: Path) -> Any:
    """The network of an MLflow pytorch model checked by pt2_problem; MLflow refuses an archive
    with a record that is not plain data (the switch is off) before torch reads it."""
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pytorch.load_model(str(folder))
    except MlflowException as err:
        if "pickle" not in str(err).lower():
            raise
        raise UntrustedModel(
            f"{uri}: its pt2 archive holds something other than a graph and tensors (a pickle): "
            f"loading it would run whatever code it holds; expected a model trainlab logged "
            f"(train it again), or {TRUST_OPTION} if you trust everyone who can write to this "
            "store"
        ) from None
