"""The three engines (numpy, autograd, lightning) check each other and the least-squares optimum.

Trajectories are read back from a real MLflow store: in-process `pipeline.run` over Hydra's
composition for speed, and `trainlab-train` subprocesses for the presets and `make compare`.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import all_runs, run_cli, run_composed
from trainlab.data.dataset import Dataset
from trainlab.errors import ConfigError
from trainlab.measures.references import least_squares_loss

ENGINES = ("numpy", "autograd", "lightning")
# Note 17 and note 20's setup from w = 0 (and b = 0): the agreement check of the issue.
SEED_ZERO = ("data=seed", "model.init=zeros", "optimizer=sgd", "optimizer.lr=0.01", "loss=mse")
TOLERANCE = {"64": 1e-6, "32": 1e-5}


def histories(client, run) -> dict[str, list[tuple[int, float]]]:
    """Every per-step metric of a run as [(step, value), ...] in step order."""
    out = {}
    for key in run.data.metrics:
        points = client.get_metric_history(run.info.run_id, key)
        out[key] = sorted((m.step, m.value) for m in points)
    return out


def run_engines(composed, client, *overrides: str) -> dict[str, dict]:
    """One in-process run per engine with the same overrides; their metric histories."""
    for engine in ENGINES:
        run_composed(
            composed(f"engine={engine}", f"run_name={engine}", "print_every=0", *overrides)
        )
    runs = {r.info.run_name: r for r in all_runs(client)}
    assert set(runs) == set(ENGINES)
    for run in runs.values():
        assert run.info.status == "FINISHED"
    return {name: histories(client, run) for name, run in runs.items()}


def largest_disagreement(by_engine: dict[str, dict], keys: list[str]) -> float:
    """max |a - b| over the engines, the keys and the steps; the steps must be the same."""
    reference = by_engine["lightning"]
    worst = 0.0
    for name, metrics in by_engine.items():
        for key in keys:
            steps = [s for s, _ in metrics[key]]
            assert steps == [s for s, _ in reference[key]], (name, key)
            diff = np.abs(np.array(metrics[key])[:, 1] - np.array(reference[key])[:, 1])
            worst = max(worst, float(diff.max()))
    return worst


@pytest.mark.parametrize("precision", ["64", "32"])
def test_engines_agree_step_by_step_on_seed_data(composed, client, precision):
    by_engine = run_engines(
        composed, client, *SEED_ZERO, "max_epochs=100", f"device.precision={precision}",
        "tracking.grad_norm=true",
    )  # fmt: skip
    keys = ["train/loss", "weight/0_0", "bias/0", "ols/gap", "train/lr", "train/grad_norm"]
    for metrics in by_engine.values():
        assert [s for s, _ in metrics["train/loss"]] == list(range(100))
        assert metrics["train/loss"][0][1] == pytest.approx(30.0)  # w = b = 0: mean(Y^2)
        assert metrics["weight/0_0"][-1][1] > 1.5  # it learns, not only agrees
        assert metrics["train/grad_norm"][0][1] == pytest.approx(1000**0.5)  # |(-30, -10)|
        assert [v for _, v in metrics["train/lr"]] == [0.01] * 100  # the configured rate
        assert set(keys) <= set(metrics)
    worst = largest_disagreement(by_engine, keys)
    print(f"seed data, precision {precision}: largest disagreement {worst:.3g}")
    assert worst <= TOLERANCE[precision]


@pytest.mark.parametrize("loss", ["mse", "l1", "huber"])
def test_engines_agree_on_multi_feature_data(composed, client, loss):
    """3 features, 2 targets, PyTorch's random initial weights (copied), a validation split."""
    data = ("data=synthetic", "data.n_samples=64", "data.n_targets=2", "data.val_split=0.25")
    by_engine = run_engines(
        composed, client, *data, f"loss={loss}", "optimizer.lr=0.1", "max_epochs=60",
        "device.precision=64",
    )  # fmt: skip
    keys = ["train/loss", "val/loss", "bias/0", "bias/1"]
    keys += [f"weight/{o}_{i}" for o in range(2) for i in range(3)]
    for metrics in by_engine.values():
        assert metrics["train/loss"][-1][1] < 0.5 * metrics["train/loss"][0][1]
        assert ("ols/gap" in metrics) == ("ols/loss" in metrics) == (loss == "mse")
    worst = largest_disagreement(by_engine, keys)
    print(f"synthetic data, loss {loss}, precision 64: largest disagreement {worst:.3g}")
    assert worst <= TOLERANCE["64"]
    if loss == "mse":  # ols/gap = train/loss - the least-squares optimum, at every step
        ols = least_squares_loss(synthetic_dataset(64, n_targets=2, val_split=0.25), bias=True)
        for metrics in by_engine.values():
            assert metrics["ols/loss"] == [(0, pytest.approx(ols, rel=1e-12))]
            gaps = [train - ols for _, train in metrics["train/loss"]]
            assert [v for _, v in metrics["ols/gap"]] == pytest.approx(gaps, rel=1e-9)
            assert min(gaps) > 0  # nothing beats the optimum


def synthetic_dataset(n_samples: int, **config) -> Dataset:
    """The synthetic data as pipeline.run loads it (seed 0, float64)."""
    from trainlab.config.data import SyntheticDataConfig
    from trainlab.data.sources import load_dataset

    return load_dataset(SyntheticDataConfig(n_samples=n_samples, **config), seed=0)


@pytest.mark.parametrize("bias", [True, False])
def test_least_squares_loss_is_the_optimum_scikit_learn_finds(bias):
    from sklearn.linear_model import LinearRegression

    data = synthetic_dataset(50)
    x, y = data.x_train.double().numpy(), data.y_train.double().numpy()
    fitted = LinearRegression(fit_intercept=bias).fit(x, y)
    expected = float(np.mean((fitted.predict(x) - y) ** 2))
    assert least_squares_loss(data, bias) == pytest.approx(expected, rel=1e-9)


def test_diabetes_with_lbfgs_reaches_the_least_squares_optimum(composed, client):
    run_composed(composed("experiment=diabetes", "print_every=0"))
    (run,) = all_runs(client)
    final, ols = run.data.metrics["final/train_loss"], run.data.metrics["ols/loss"]
    gap = (final - ols) / ols
    print(f"diabetes: final train MSE {final:.6g}, least squares {ols:.6g}, gap {gap:.2e}")
    assert -1e-6 < gap < 0.005


def test_manual_engines_refuse_what_they_cannot_express(composed, client):
    cases = [
        ("numpy", "optimizer=adam", "optimizer=adam"),
        ("autograd", "optimizer=lbfgs", "optimizer=lbfgs"),
        ("autograd", "optimizer.momentum=0.9", "optimizer.momentum=0.9"),
        ("numpy", "optimizer.weight_decay=0.1", "optimizer.weight_decay=0.1"),
        ("autograd", "scheduler=step", "scheduler=step"),
        ("numpy", "loss=smooth_l1", "loss=smooth_l1"),
        ("autograd", "data.batch_size=2", "data.batch_size=2"),
        ("numpy", "device.precision=bf16-mixed", "device.precision='bf16-mixed'"),
        ("numpy", "device=gpu", "device=gpu"),
        ("autograd", "device.num_nodes=2", "device.num_nodes=2"),
        ("numpy", "trainer.gradient_clip_val=1", "trainer.gradient_clip_val=1.0"),
        ("autograd", "trainer.accumulate_grad_batches=2", "trainer.accumulate_grad_batches=2"),
        ("numpy", "trainer.deterministic=true", "trainer.deterministic=true"),
    ]
    for engine, override, named in cases:
        with pytest.raises(ConfigError, match=f"^engine={engine} does not support {named}; "):
            run_composed(composed(f"engine={engine}", override))
    assert all_runs(client) == []  # refused before any MLflow run exists


# ------------------------------------------------------------------- the seed's presets
def note_17(learning_rate: float = 0.01, n_iters: int = 10) -> list[tuple[float, float]]:
    """Note 17 as the seed writes it (float32 NumPy); (w after the update, loss) per epoch."""
    X = np.array([1, 2, 3, 4], dtype=np.float32)
    Y = np.array([2, 4, 6, 8], dtype=np.float32)
    w = 0.0
    out = []
    for _ in range(n_iters):
        y_pred = w * X
        loss = ((y_pred - Y) ** 2).mean()
        dw = np.dot(2 * X, y_pred - Y).mean()  # the sum over the samples: N times dMSE/dw
        w -= learning_rate * dw
        out.append((float(w), float(loss)))
    return out


def test_seed_numpy_reproduces_note_17_exactly_with_lr_scaled_by_n(composed, client, capsys):
    run_composed(composed("experiment=seed_numpy", "optimizer.lr=0.04"))  # 0.01 x N=4
    printed = capsys.readouterr().out
    (run,) = all_runs(client)
    assert run.data.tags["trainlab.engine"] == "numpy"
    metrics = histories(client, run)
    expected = note_17()
    assert [v for _, v in metrics["weight/0_0"]] == [w for w, _ in expected]
    assert [v for _, v in metrics["train/loss"]] == [loss for _, loss in expected]
    for epoch, (w, loss) in enumerate(expected):
        assert f"epoch {epoch}, w = {w:.8g}, loss = {loss:.8g}\n" in printed
    assert "bias/0" not in metrics and "Prediction before training: f(5) =  0\n" in printed


def test_seed_numpy_preset_takes_the_true_gradient(composed, client):
    """At lr 0.01 the first step is a quarter of the note's: its gradient is N = 4 times dMSE/dw."""
    run_composed(composed("experiment=seed_numpy"))
    (run,) = all_runs(client)
    weights = [v for _, v in histories(client, run)["weight/0_0"]]
    assert len(weights) == 10
    assert weights[0] == pytest.approx(note_17()[0][0] / 4)
    assert weights == pytest.approx([w for w, _ in note_17(learning_rate=0.0025)], abs=1e-6)


@pytest.mark.slow
def test_seed_autograd_prints_the_note_18_run(home, client):
    done = run_cli("experiment=seed_autograd", home=home)
    assert done.returncode == 0, done.stderr
    assert "epoch 0, w = 0.29999998, loss = 30\n" in done.stdout  # 0.01 * 30 in float32
    assert "epoch 99, w = 1.9999996, loss = " in done.stdout
    (run,) = all_runs(client)
    assert run.data.tags["trainlab.engine"] == "autograd" and run.info.status == "FINISHED"
    assert run.data.metrics["weight/0_0"] == pytest.approx(1.9999996, abs=1e-7)
    assert run.data.metrics["pred/after"] == pytest.approx(9.999998, abs=1e-6)
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 100


@pytest.mark.slow
def test_compare_engines_sweep_puts_the_three_side_by_side(home, client):
    """What `make compare` runs: one multirun, one MLflow experiment, three agreeing runs."""
    done = run_cli("-m", "experiment=compare_engines", home=home)
    assert done.returncode == 0, done.stderr
    (experiment,) = [e for e in client.search_experiments() if e.name == "compare_engines"]
    everything = client.search_runs([experiment.experiment_id])
    # A multirun is one parent run (the sweep's summary) with one child run per engine.
    (parent,) = [r for r in everything if r.data.tags.get("trainlab.sweep") == "parent"]
    runs = [r for r in everything if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == len(everything) - 1
    assert sorted(r.info.run_name for r in runs) == sorted(ENGINES)
    assert sorted(r.data.tags["trainlab.engine"] for r in runs) == sorted(ENGINES)
    by_engine = {r.info.run_name: histories(client, r) for r in runs}
    keys = ["train/loss", "weight/0_0", "bias/0", "ols/gap"]
    assert largest_disagreement(by_engine, keys) <= TOLERANCE["32"]
