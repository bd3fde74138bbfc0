"""A classifier as MLflow serves it: rows of features in, the label and one probability per class
out (a table: `label`, `probability_<class>` ...), for `trainlab-predict`,
`mlflow.pyfunc.load_model(...).predict(...)` and `mlflow models serve` alike.

Logged as MLflow's "model from code" (recorder/model.py): this file travels inside the logged
model and MLflow runs it when the model loads; the trained network (behind its standardization,
answering class probabilities: run_payloads.py) is an artifact pickled with its classes by
value, so loading needs torch, numpy, pandas and cloudpickle, not trainlab. (A PythonModel
pickled whole cannot be: MLflow wraps its predict method at class creation.)
"""

import json

import cloudpickle
import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

NETWORK, CLASSES = "network", "classes"  # the model's artifacts


class ServedClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        with open(context.artifacts[NETWORK], "rb") as file:
            self.network = cloudpickle.load(file).eval()
        with open(context.artifacts[CLASSES]) as file:
            self.classes = list(json.load(file))

    # np.ndarray: a hint MLflow accepts without a schema of its own (the model's signature is
    # the tensor of rows); without one, MLflow warns at every load.
    def predict(self, context, model_input: np.ndarray, params=None):
        rows = np.asarray(model_input, dtype=np.float64)
        dtype = next(self.network.parameters()).dtype
        with torch.no_grad():
            probabilities = self.network(torch.as_tensor(rows, dtype=dtype)).double().numpy()
        table = {"label": [self.classes[i] for i in probabilities.argmax(axis=1)]}
        for k, name in enumerate(self.classes):
            table[f"probability_{name}"] = probabilities[:, k]
        return pd.DataFrame(table)


mlflow.models.set_model(ServedClassifier())
