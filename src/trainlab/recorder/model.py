"""The trained model as an MLflow model of the run (inside the recorder process).

What is logged is the trainer's `StandardizedModel`: the network behind the standardization it was
trained with, so `trainlab-predict RUN 5`, `mlflow.pyfunc.load_model(...).predict(...)` and
`mlflow models serve` take the numbers a person types.

The model is logged as torch.export's program ("pt2": a graph and tensors, no pickled objects):
whoever loads it runs none of the code a crafted artifact could hold (trainlab-predict and
trainlab-evaluate load it only that way: commands/logged_model.py). A classifier is MLflow's "model
from code" (recorder/served_classifier.py) around its network saved the same way. Exporting
imports torch's dynamo first (over a second for the first model of a process): the warm-up
rehearses it while the run trains (recorder/warmup.py). A model that does not export (data-
dependent control flow, inputs torch.export cannot take) is logged as its weights and the run's
model config (models/weights.py: a pyfunc whose loader_module is trainlab's, tensors read with
weights_only), once rebuilt here from them it answers the example rows as the trained one did;
where it does not, the run says why in one line and keeps its checkpoint.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import LoggedModelOutput, Metric
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from trainlab.models.portable import from_bytes
from trainlab.tracking.payloads import ModelPayload

MODEL_NAME = "model"  # runs:/<run_id>/model
PT2 = "pt2"  # MLflow's serialization_format for torch.export's program
# A model torch.export cannot export: its weights and config, loaded by trainlab's own module.
LOADER, WEIGHTS_DATA = "trainlab.models.weights", "weights"
KEPT = "; its weights are in the run's checkpoint, if it has one"
# A classifier is logged as MLflow's model from code: this file travels inside the model.
SERVED_CLASSIFIER = Path(__file__).with_name("served_classifier.py")


def import_pytorch_flavor() -> None:
    """Import mlflow.pytorch without the Lightning autologging it would also import.

    mlflow.pytorch imports `pytorch_lightning` at import time, only for autologging, and skips it
    when that package is not installed (it catches the ImportError). The recorder never trains,
    so it marks the package absent: importing mlflow.pytorch in a fresh process then takes
    seconds less.
    """
    sys.modules.setdefault("pytorch_lightning", None)  # type: ignore[arg-type]
    import mlflow.pytorch  # noqa: F401


def prepare_export() -> None:
    """mlflow.pytorch imported, and one tiny module exported: the first export of a process
    imports torch's dynamo (seconds), done by the warm-up while the trainer imports torch."""
    import_pytorch_flavor()
    import torch

    torch.export.export(torch.nn.Linear(1, 1).eval(), (torch.zeros(2, 1),))


def answer_table(model: ModelPayload) -> Any:
    """What the served classifier answers for the example rows (recorder/served_classifier.py:
    the label, then one probability per class): its signature's output."""
    import pandas as pd

    table = {"label": [model.classes[i] for i in model.output.argmax(axis=1)]}
    for k, name in enumerate(model.classes):
        table[f"probability_{name}"] = model.output[:, k].astype(np.float64)
    return pd.DataFrame(table)


def classifier_artifacts(network: Any, model: ModelPayload, folder: Path) -> dict[str, str]:
    """The served classifier's network (an MLflow pytorch model in the pt2 format: rows in,
    probabilities out) and class names, as files."""
    saved, classes = folder / "network", folder / "classes.json"
    mlflow.pytorch.save_model(
        network,
        str(saved),
        signature=infer_signature(model.example, model.output),
        input_example=model.example,
        pip_requirements=pip_requirements(network),
        serialization_format=PT2,
    )
    classes.write_text(json.dumps(list(model.classes)))
    return {"network": str(saved), "classes": str(classes)}


def pip_requirements(module: Any = None) -> list[str]:
    """Given explicitly: MLflow's own inference starts a subprocess that costs seconds a model.
    A model with a LightningModule inside (a user's) needs Lightning to load."""
    import torch

    pins = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]
    bases = {base.__module__ for c in classes_in(module) for base in c.__mro__}
    if any(name.startswith(("lightning.", "pytorch_lightning")) for name in bases):
        pins.append(f"lightning=={importlib.metadata.version('lightning')}")
    return pins


def classes_in(module: Any) -> list[type]:
    if module is None:
        return []
    return [type(part) for part in module.modules()]


def rehearse_model_logging() -> None:
    """Save a one-weight model as log_trained_model saves one, into a folder then removed: the
    first save of a process costs more than the next ones, and the first export imports torch's
    dynamo (recorder/warmup.py)."""
    import torch

    example = np.zeros((2, 1), dtype=np.float32)
    module = torch.nn.Linear(1, 1).eval()
    with torch.no_grad():
        output = module(torch.from_numpy(example)).numpy()
    with tempfile.TemporaryDirectory(prefix="trainlab-rehearsal-") as folder:
        mlflow.pytorch.save_model(
            module,
            str(Path(folder) / MODEL_NAME),
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=pip_requirements(),
            serialization_format=PT2,
        )


class NotExported(RuntimeError):
    """torch.export cannot export the model; the message is the line the run prints."""


@contextmanager
def exporting() -> Iterator[None]:
    """torch.export's own failure said in one line; the store's (MLflow, OSError) go on as
    they are (recorder/writer.py says them)."""
    try:
        yield
    except (MlflowException, OSError):
        raise
    except Exception as err:
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise NotExported(
            f"torch.export cannot export it ({type(err).__name__}: {first.strip()[:200]})"
        ) from None


def log_weights(network: Any, model: ModelPayload, common: dict[str, Any], why: str) -> Any:
    """The model as its weights and the config that rebuilds it (models/weights.py), logged
    only once rebuilt from those files it answers the example rows as the trained one did."""
    # Imported only for such a model: hydra's instantiate and trainlab's model classes.
    from trainlab.models.weights import UnsafeWeights, load_weights, save_weights

    with tempfile.TemporaryDirectory(prefix="trainlab-weights-") as folder:
        data = Path(folder) / WEIGHTS_DATA
        try:
            if model.rebuild is None:
                raise UnsafeWeights("the trainer sent no config to rebuild it from")
            save_weights(data, network, model.rebuild, list(model.classes))
            rebuilt, _ = load_weights(data)
            import torch

            with torch.no_grad():
                output = rebuilt(torch.as_tensor(model.example)).double().numpy()
        except UnsafeWeights as err:
            raise NotExported(f"{why}, and as weights {err}{KEPT}") from None
        if output.shape != model.output.shape or not np.allclose(
            output, model.output, rtol=1e-5, atol=1e-6
        ):
            raise NotExported(
                f"{why}, and rebuilt from its weights and the run's model config it answers "
                f"differently (its constructor does more than the config says?){KEPT}"
            )
        return mlflow.pyfunc.log_model(loader_module=LOADER, data_path=str(data), **common)


def log_trained_model(
    client: MlflowClient,
    run_id: str,
    model: ModelPayload,
    step: int,
    final_metrics: dict[str, float],
    clock_ms: int,
) -> str:
    """Log the model (signature, input example) as the run's output; register it when asked.

    Returns the model's URI (models:/<model_id>). The run's final metrics (logged at `step`)
    are linked to it, as MLflow's log_model(run_id=..., step=...) would link them.
    """
    import_pytorch_flavor()
    # The trainer's own process pickled it (models/portable.py): the recorder's input, never
    # what is logged.
    network = from_bytes(model.module)
    output = answer_table(model) if model.classes else model.output
    signature = infer_signature(model.example, output)
    # Created here, in the run's experiment: log_model without an active fluent run would put it
    # in the Default experiment, whose artifacts land in ./mlruns under the current folder.
    record = client.get_run(run_id)
    logged = client.create_logged_model(
        experiment_id=record.info.experiment_id,
        name=MODEL_NAME,
        source_run_id=run_id,
        params=record.data.params,
        tags={"mlflow.source.name": "trainlab-train"},
    )
    # log_model works through MLflow's fluent API: point it at this run's store. The recorder
    # handles one message at a time, so this process-wide setting cannot cross runs.
    mlflow.set_tracking_uri(client.tracking_uri)
    common = {
        "name": MODEL_NAME,
        "signature": signature,
        "input_example": model.example,
        "pip_requirements": pip_requirements(network),
        "registered_model_name": model.register,
        # trainlab-predict matches CSV columns by these names and labels its output with them.
        "metadata": {
            "feature_names": model.feature_names,
            "target_names": model.target_names,
            "class_names": list(model.classes),
        },
        # No run_id (and no fluent active run to start, end or leak): given one, log_model
        # reads the whole history of every metric of the run to find those at `step` (seconds
        # for a long run). The run's output and the final metrics are linked below, from what
        # the recorder already holds.
        "model_id": logged.model_id,
    }
    try:
        with exporting():
            if model.classes:
                with tempfile.TemporaryDirectory(prefix="trainlab-classifier-") as folder:
                    artifacts = classifier_artifacts(network, model, Path(folder))
                    info = mlflow.pyfunc.log_model(
                        python_model=str(SERVED_CLASSIFIER), artifacts=artifacts, **common
                    )
            else:
                info = mlflow.pytorch.log_model(network, serialization_format=PT2, **common)
    except NotExported as refused:
        info = log_weights(network, model, common, str(refused))
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
    linked = [
        Metric(key, float(value), clock_ms, step, model_id=logged.model_id)
        for key, value in final_metrics.items()
    ]
    if linked:
        client.log_batch(run_id, metrics=linked)
    if model.register and info.registered_model_version is not None:
        client.set_registered_model_alias(
            model.register, model.alias, str(info.registered_model_version)
        )
    return info.model_uri
