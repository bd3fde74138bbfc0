"""The optimum each convex run is measured against: computed independently here (scipy on the
same objective) and approached from above by training; none where the loss has no minimum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from tests.helpers import all_runs, history
from trainlab.data.dataset import Dataset
from trainlab.measures.references import (
    least_squares_loss,
    logistic_optimum,
    ridge_optimum,
    unbounded_direction,
)


def blobs(separated: float, classes: int = 3, rows: int = 60, seed: int = 0) -> Dataset:
    """`classes` Gaussian clouds in 2-D, their centres `separated` apart."""
    rng = np.random.default_rng(seed)
    labels = np.arange(rows) % classes
    centres = np.stack(
        [np.cos(2 * np.pi * labels / classes), np.sin(2 * np.pi * labels / classes)], 1
    )
    x = centres * separated + rng.normal(size=(rows, 2))
    names = tuple(f"c{k}" for k in range(classes))
    return Dataset(torch.tensor(x), torch.tensor(labels), classes=names)


def scipy_softmax_optimum(data: Dataset, decay: float) -> float:
    x = np.c_[data.x_train.numpy(), np.ones(len(data.x_train))]
    y, k = data.y_train.numpy(), len(data.classes)

    def objective(flat: np.ndarray) -> float:
        z = x @ flat.reshape(x.shape[1], k)
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -log_p[np.arange(len(y)), y].mean() + decay / 2 * (flat**2).sum()

    return minimize(objective, np.zeros(x.shape[1] * k), method="BFGS", tol=1e-12).fun


@pytest.mark.parametrize("decay", [0.0, 0.05])
def test_the_softmax_optimum_is_the_objectives_minimum(decay):
    data = blobs(separated=0.5)  # overlapping classes: a minimum exists without decay too
    assert not unbounded_direction(data, bias=True, binary=False)
    ours = logistic_optimum(data, bias=True, binary=False, smoothing=0.0, decay=decay)
    assert ours.loss == pytest.approx(scipy_softmax_optimum(data, decay), abs=1e-7)
    assert ours.penalty == decay / 2


def test_separable_classes_have_no_minimum_without_decay():
    assert unbounded_direction(blobs(separated=20.0), bias=True, binary=False)
    # One class apart from two that overlap: still no minimum (its margin can grow for ever).
    x = torch.tensor([[10.0, 0], [11, 0], [0, 0.1], [0, -0.1], [0.1, 0], [-0.1, 0]])
    y = torch.tensor([0, 0, 1, 2, 1, 2])
    assert unbounded_direction(Dataset(x, y, classes=("a", "b", "c")), bias=True, binary=False)
    assert not unbounded_direction(blobs(separated=0.5), bias=True, binary=False)


def test_ridge_is_the_least_squares_optimum_plus_its_penalty():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 + rng.normal(size=(50, 1)) * 0.1
    data = Dataset(torch.tensor(x), torch.tensor(y))
    plain, ridge = least_squares_loss(data, bias=True), ridge_optimum(data, bias=True, decay=0.1)
    xb = np.c_[x, np.ones(50)]
    found = minimize(lambda w: np.mean((xb @ w - y[:, 0]) ** 2) + 0.05 * (w**2).sum(), np.zeros(4))
    assert ridge.loss == pytest.approx(found.fun, rel=1e-6) and ridge.loss > plain


def test_training_approaches_the_ridge_optimum_from_above(train_in_process, client):
    status, out, err = train_in_process(
        "data=synthetic", "data.n_samples=64", "optimizer.weight_decay=0.1", "optimizer.lr=0.1",
        "max_epochs=300", "device.precision=64", "print_every=0",
    )  # fmt: skip
    assert status == 0, err
    (run,) = all_runs(client)
    gaps = [g for _, g in history(client, run.info.run_id, "optimum/gap")]
    assert len(gaps) == 300 and min(gaps) > -1e-9 and gaps[-1] < 1e-6 < gaps[0]
    assert "optimum/loss" in run.data.metrics and "ols/gap" in run.data.metrics
    assert "Optimum of the objective (the loss + weight_decay/2 |w|^2):" in out


def test_a_separable_problem_says_so_once_and_logs_no_gap(train_in_process, client, tmp_path):
    rows = ["a,b,label"] + [f"{i},{i % 2 * 10},{i % 2}" for i in range(20)]
    (tmp_path / "sep.csv").write_text("\n".join(rows) + "\n")
    status, out, err = train_in_process(
        "data=csv", f"data.path={tmp_path / 'sep.csv'}", "data.target=label", "loss=cross_entropy",
        "max_epochs=5", "print_every=0",
    )  # fmt: skip
    assert status == 0, err
    assert out.count("the classes are separable") == 1
    (run,) = all_runs(client)
    assert not {"optimum/loss", "optimum/gap", "ols/gap"} & set(run.data.metrics)
