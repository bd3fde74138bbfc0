"""Held-out rows scored (recorder side): `test/*` metrics and the evaluation plots.

The numbers are scikit-learn's own functions on the model's predictions (MLflow's evaluate
computes the same ones from the same library): regression `test/r2`, `test/mae`, `test/rmse`,
`test/mape` (over all targets); classification `test/accuracy`, `test/precision`,
`test/recall`, `test/f1` (macro over the classes), `test/log_loss`, `test/roc_auc` (binary: of
the second class; several: macro, one class against the rest). A ROC AUC needs both kinds of
rows (every class, for several): without them it is left out, and the reason is returned.
Used for a run's test split (data.test_split) and by `trainlab-evaluate` for new rows.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from sklearn import metrics as sk

from trainlab.recorder.plots import confusion_figure, new_axes, residuals
from trainlab.tracking.payloads import Evaluation

PREFIX = "test/"


def scores(evaluation: Evaluation, prefix: str = PREFIX) -> tuple[dict[str, float], list[str]]:
    """The metrics, and what could not be scored (one line each)."""
    if evaluation.classes:
        return classification_scores(evaluation, prefix)
    y, predicted = evaluation.targets, evaluation.predicted
    found = {
        "r2": sk.r2_score(y, predicted),
        "mae": sk.mean_absolute_error(y, predicted),
        "rmse": math.sqrt(sk.mean_squared_error(y, predicted)),
        "mape": sk.mean_absolute_percentage_error(y, predicted),
    }
    return {f"{prefix}{k}": float(v) for k, v in found.items()}, []


def classification_scores(
    evaluation: Evaluation, prefix: str
) -> tuple[dict[str, float], list[str]]:
    labels = np.arange(len(evaluation.classes))
    y = evaluation.targets.astype(np.int64)
    probabilities = evaluation.predicted
    chosen = probabilities.argmax(axis=1)
    found = {
        "accuracy": sk.accuracy_score(y, chosen),
        "precision": sk.precision_score(y, chosen, labels=labels, average="macro", zero_division=0),
        "recall": sk.recall_score(y, chosen, labels=labels, average="macro", zero_division=0),
        "f1": sk.f1_score(y, chosen, labels=labels, average="macro", zero_division=0),
        "log_loss": sk.log_loss(y, probabilities, labels=labels),
    }
    missing: list[str] = []
    present = set(np.unique(y).tolist())
    if len(labels) == 2 and present == {0, 1}:
        found["roc_auc"] = sk.roc_auc_score(y, probabilities[:, 1])
    elif len(labels) > 2 and present == set(labels.tolist()):
        found["roc_auc"] = sk.roc_auc_score(
            y, probabilities, multi_class="ovr", average="macro", labels=labels
        )
    else:
        absent = [evaluation.classes[i] for i in labels if i not in present]
        missing.append(f"{prefix}roc_auc not scored: no rows of class {', '.join(absent)}")
    return {f"{prefix}{k}": float(v) for k, v in found.items()}, missing


def figures(evaluation: Evaluation) -> dict[str, Figure]:
    """The evaluation plots, by file name."""
    if evaluation.classes:
        confusion = confusion_figure(
            evaluation.targets, evaluation.predicted, evaluation.classes, "test rows"
        )
        drawn = {"confusion_matrix.png": confusion}
        present = np.unique(evaluation.targets.astype(np.int64))
        if len(present) >= 2:
            drawn["roc.png"] = roc_figure(evaluation)
        return drawn
    return {
        "residuals.png": residuals_figure(evaluation),
        "predicted_vs_actual.png": predicted_figure(evaluation),
    }


def roc_figure(evaluation: Evaluation) -> Figure:
    """One ROC curve per class (one class against the rest); for two classes, the second."""
    y = evaluation.targets.astype(np.int64)
    figure, axes = new_axes()
    classes = evaluation.classes
    drawn = [1] if len(classes) == 2 else range(len(classes))
    for k in drawn:
        if not (y == k).any() or (y == k).all():
            continue
        fpr, tpr, _ = sk.roc_curve(y == k, evaluation.predicted[:, k])
        area = sk.auc(fpr, tpr)
        axes.plot(fpr, tpr, label=f"{classes[k]} (AUC {area:.3f})")
    axes.plot([0, 1], [0, 1], color="gray", ls="--")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test rows)")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def residuals_figure(evaluation: Evaluation) -> Figure:
    predicted = evaluation.predicted.reshape(len(evaluation.targets), -1)
    targets = evaluation.targets.reshape(len(evaluation.targets), -1)
    named = evaluation.target_names
    series = {
        named[t] if t < len(named) else f"y{t}": (predicted[:, t], targets[:, t])
        for t in range(targets.shape[1])
    }
    return residuals(series, "Residuals (test rows)")


def predicted_figure(evaluation: Evaluation) -> Figure:
    figure, axes = new_axes()
    actual, predicted = evaluation.targets.reshape(-1), evaluation.predicted.reshape(-1)
    axes.scatter(actual, predicted, s=14)
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    axes.plot([low, high], [low, high], color="gray", ls="--", label="prediction = actual")
    axes.set(xlabel="actual", ylabel="predicted", title="Predicted against actual (test rows)")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure
