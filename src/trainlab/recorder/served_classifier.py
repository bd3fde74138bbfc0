"""A classifier as MLflow serves it: rows of features in, the label and one probability per class
out (a table: `label`, `probability_<class>` ...), for `mlflow.pyfunc.load_model(...).predict(...)`
and `mlflow models serve` alike (trainlab-predict reads the same two artifacts itself, and never
runs this file: commands/logged_model.py).

Logged as MLflow's "model from code" (recorder/model.py): this file travels inside the logged
model and MLflow runs it when the model loads. The trained network (behind its standardization,
answering class probabilities: run_handover.py) is an MLflow pytorch model in the pt2 format
(torch.export's program: a graph and tensors), loaded with MLflow's pickle switch off, so that
MLflow checks that the archive holds no pickled object before torch reads it. Loading needs
torch, numpy, pandas and MLflow, not trainlab.
"""

import json
import os

import mlflow.models
import mlflow.pyfunc
import mlflow.pytorch
import numpy as np
import pandas as pd
import torch

NETWORK, CLASSES = "network", "classes"  # the model's artifacts
PICKLE_SWITCH = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"  # MLflow's documented switch


def load_network(path):
    """The pt2 network, read only after MLflow has checked it holds no pickle; the caller's
    setting of the switch is put back."""
    saved = os.environ.get(PICKLE_SWITCH)
    os.environ[PICKLE_SWITCH] = "false"
    try:
        return mlflow.pytorch.load_model(path)
    finally:
        if saved is None:
            del os.environ[PICKLE_SWITCH]
        else:
            os.environ[PICKLE_SWITCH] = saved


class ServedClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.network = load_network(context.artifacts[NETWORK])
        with open(context.artifacts[CLASSES]) as file:
            self.classes = list(json.load(file))

    # np.ndarray: a hint MLflow accepts without a schema of its own (the model's signature is
    # the tensor of rows); without one, MLflow warns at every load.
    def predict(self, context, model_input: np.ndarray, params=None):
        rows = np.asarray(model_input, dtype=np.float64)
        dtype = next(iter(self.network.state_dict().values())).dtype
        with torch.no_grad():
            probabilities = self.network(torch.as_tensor(rows, dtype=dtype)).double().numpy()
        table = {"label": [self.classes[i] for i in probabilities.argmax(axis=1)]}
        for k, name in enumerate(self.classes):
            table[f"probability_{name}"] = probabilities[:, k]
        return pd.DataFrame(table)


mlflow.models.set_model(ServedClassifier())
