"""Held-out evaluation: a run's test/* scores equal scikit-learn's on the logged model's answers
for the same rows, and `trainlab-evaluate` scores new rows into an evaluation run linked to the
model (real store, real MLflow model, the command as a subprocess)."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as sk
from sklearn.datasets import load_diabetes, load_wine

from tests.helpers import BIN, all_runs, store
from trainlab.data.splits import split_rows

EVALUATE = str(BIN / "trainlab-evaluate")
SEED = 3


def wine_csv(folder: Path) -> Path:
    """scikit-learn's wines with the cultivar as a text label, as a user's file would hold it."""
    bunch = load_wine(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    frame["cultivar"] = [f"grape_{'abc'[k]}" for k in bunch.target]
    path = folder / "wine.csv"
    frame.to_csv(path, index=False)
    return path


def diabetes_csv(folder: Path) -> Path:
    frame = load_diabetes(as_frame=True).frame
    path = folder / "diabetes.csv"
    frame.to_csv(path, index=False)
    return path


def held_out(path: Path, val_split: float, test_split: float) -> pd.DataFrame:
    """The rows the run kept out (the same seeded permutation as the run's split)."""
    frame = pd.read_csv(path)
    split = split_rows(len(frame), val_split, test_split, SEED)
    return frame.iloc[split.test.numpy()]


def logged_model(home: Path, uri: str, monkeypatch: pytest.MonkeyPatch):
    """The run's MLflow model as a user loads it from the store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store(home).tracking_uri)
    return mlflow.pyfunc.load_model(uri)


def train(train_in_process, path: Path, target: str, *extra: str):
    status, out, err = train_in_process(
        "data=csv",
        f"data.path={path}",
        f"data.target={target}",
        "data.val_split=0.2",
        "data.test_split=0.3",
        "data.standardize=true",
        "optimizer=adam",
        "optimizer.lr=0.05",
        "max_epochs=40",
        f"seed={SEED}",
        *extra,
    )
    assert status == 0, err
    return out


def test_a_classifiers_test_scores_equal_scikit_learns_on_its_logged_models_answers(
    home, train_in_process, monkeypatch
):
    path = wine_csv(home)
    train(train_in_process, path, "cultivar", "loss=cross_entropy", "model=mlp", "model.hidden=[8]")
    (run,) = all_runs(store(home))
    rows = held_out(path, 0.2, 0.3)
    model = logged_model(home, f"runs:/{run.info.run_id}/model", monkeypatch)
    answer = model.predict(rows.drop(columns="cultivar").astype("float32"))
    classes = ["grape_a", "grape_b", "grape_c"]
    probabilities = answer[[f"probability_{c}" for c in classes]].to_numpy(np.float64)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)  # as the run does
    truth = rows["cultivar"].map(classes.index).to_numpy()
    assert list(answer["label"]) == [classes[k] for k in probabilities.argmax(axis=1)]
    metrics = run.data.metrics
    expected = {
        "test/accuracy": sk.accuracy_score(truth, probabilities.argmax(axis=1)),
        "test/f1": sk.f1_score(truth, probabilities.argmax(axis=1), average="macro"),
        "test/log_loss": sk.log_loss(truth, probabilities, labels=[0, 1, 2]),
        "test/roc_auc": sk.roc_auc_score(truth, probabilities, multi_class="ovr"),
    }
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert metrics["test/accuracy"] > 0.8  # it learned: the scores are of a real model
    drawn = {a.path for a in store(home).list_artifacts(run.info.run_id, "plots/test")}
    assert {"plots/test/confusion_matrix.png", "plots/test/roc.png"} <= drawn, drawn


def test_a_regressions_test_scores_equal_scikit_learns(home, train_in_process, monkeypatch):
    path = diabetes_csv(home)
    train(train_in_process, path, "target", "loss=mse")
    (run,) = all_runs(store(home))
    rows = held_out(path, 0.2, 0.3)
    model = logged_model(home, f"runs:/{run.info.run_id}/model", monkeypatch)
    predicted = np.asarray(model.predict(rows.drop(columns="target").astype("float32"))).reshape(-1)
    truth = rows["target"].to_numpy()
    metrics = run.data.metrics
    assert metrics["test/r2"] == pytest.approx(sk.r2_score(truth, predicted), rel=1e-4)
    assert metrics["test/mae"] == pytest.approx(sk.mean_absolute_error(truth, predicted), rel=1e-4)
    rmse = math.sqrt(sk.mean_squared_error(truth, predicted))
    assert metrics["test/rmse"] == pytest.approx(rmse, rel=1e-4)
    mape = sk.mean_absolute_percentage_error(truth, predicted)
    assert metrics["test/mape"] == pytest.approx(mape, rel=1e-4)


def evaluate(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["TRAINLAB_HOME"] = str(home)
    return subprocess.run(
        [EVALUATE, *args], cwd=home, env=env, capture_output=True, text=True, timeout=180
    )


@pytest.mark.slow
def test_trainlab_evaluate_scores_new_rows_into_a_run_linked_to_the_model(
    home, train_in_process, monkeypatch
):
    path = wine_csv(home)
    train(train_in_process, path, "cultivar", "loss=cross_entropy")
    client = store(home)
    (trained,) = all_runs(client)
    new_rows = pd.read_csv(path).sample(60, random_state=0)
    new_path = home / "new_wines.csv"
    new_rows.to_csv(new_path, index=False)

    done = evaluate(home, trained.info.run_id, "--data", str(new_path))

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    evaluation = next(r for r in all_runs(client) if r.info.run_id != trained.info.run_id)
    assert evaluation.info.status == "FINISHED"
    assert evaluation.info.experiment_id == trained.info.experiment_id
    assert evaluation.data.tags["trainlab.evaluation_of"] == trained.info.run_id
    model_id = trained.outputs.model_outputs[0].model_id
    assert evaluation.data.tags["trainlab.evaluated_model"] == f"models:/{model_id}"
    inputs = client.get_run(evaluation.info.run_id).inputs
    assert [m.model_id for m in inputs.model_inputs] == [model_id]
    assert [d.dataset.name for d in inputs.dataset_inputs] == ["new_wines.csv"]
    answer = logged_model(home, f"models:/{model_id}", monkeypatch).predict(
        new_rows.drop(columns="cultivar").astype("float32")
    )
    classes = ["grape_a", "grape_b", "grape_c"]
    truth = new_rows["cultivar"].map(classes.index).to_numpy()
    chosen = answer["label"].map(classes.index).to_numpy()
    accuracy = sk.accuracy_score(truth, chosen)
    assert evaluation.data.metrics["eval/accuracy"] == pytest.approx(accuracy)
    assert f"eval/accuracy = {accuracy:.6g}" in done.stdout
    # The model's page lists the evaluation's scores.
    linked = {m.key for m in client.get_logged_model(model_id).metrics or []}
    assert "eval/accuracy" in linked and "eval/f1" in linked

    bad = new_rows.copy()
    bad.iloc[4, bad.columns.get_loc("cultivar")] = "grape_z"
    bad_path = home / "unknown_label.csv"
    bad.to_csv(bad_path, index=False)
    refused = evaluate(home, trained.info.run_id, "--data", str(bad_path))
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "'grape_z' in row 4" in refused.stderr and "not a class the model was trained on" in (
        refused.stderr
    )
    assert len(all_runs(client)) == 2  # nothing recorded for the refused file
    assert {r.info.status for r in all_runs(client)} == {"FINISHED"}


@pytest.mark.parametrize("preset", ["breast_cancer_logistic", "iris_softmax"])
def test_the_classification_presets_learn_and_track_their_optimum(home, train_in_process, preset):
    status, out, err = train_in_process(f"experiment={preset}", "max_epochs=40")
    assert status == 0, err
    (run,) = all_runs(store(home))
    metrics = run.data.metrics
    assert metrics["test/accuracy"] > 0.85 and metrics["val/accuracy"] > 0.85
    assert {"test/f1", "test/log_loss", "test/roc_auc", "test/precision"} <= set(metrics)
    # Full batches: one step per epoch, each with its gap to the optimum.
    gaps = [m.value for m in store(home).get_metric_history(run.info.run_id, "optimum/gap")]
    assert len(gaps) == 40 and gaps[-1] < gaps[0] and min(gaps) > -1e-6
    assert "Optimum of the objective (the loss + weight_decay/2 |w|^2)" in out


def test_a_datamodule_runs_target_is_asked_for_not_taken_from_its_class(home, train_in_process):
    """data=custom's data.target names its datamodule's class, not a column of a file."""
    args = ("data=custom", "data.target=tests.user_data.Regression", "model=mlp", "max_epochs=2")
    assert train_in_process(*args, "print_every=0")[0] == 0
    (trained,) = all_runs(store(home))
    rows = pd.DataFrame(
        {"x0": [0.1, 0.2], "x1": [0.3, 0.1], "x2": [0.5, 0.0], "y0": [1, 2], "y1": [0, 1]}
    )
    rows.to_csv(home / "new.csv", index=False)
    refused = evaluate(home, trained.info.run_id, "--data", str(home / "new.csv"))
    assert refused.returncode == 2
    assert "names no target column; expected --target <column>" in refused.stderr
    assert "tests.user_data.Regression" not in refused.stderr
