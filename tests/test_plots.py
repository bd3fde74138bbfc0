"""Plots and the logged model of a run, against a real SQLite store, with real matplotlib."""

from __future__ import annotations

import itertools
import os

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import all_runs, run_composed
from trainlab import pipeline
from trainlab.commands.predict import tracking_store
from trainlab.config.checks import check_config
from trainlab.errors import ConfigError
from trainlab.recorder.plots import History, fit_figure, loss_figure
from trainlab.tracking.messages import Rows
from trainlab.tracking.payloads import PlotData

PLOTS = {"plots/loss.png", "plots/fit.png", "plots/residuals.png", "plots/weights.png"}


def plot_files(client, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, "plots")}


def test_seed_run_has_plots_and_a_loadable_model(home, client, composed, monkeypatch, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # nothing may land under the current folder
    run_composed(composed("experiment=seed_pipeline", "print_every=0"))
    (run,) = all_runs(client)
    assert run.info.status == "FINISHED"
    assert plot_files(client, run.info.run_id) == PLOTS
    for name in PLOTS:
        with Image.open(client.download_artifacts(run.info.run_id, name)) as image:
            assert image.size == (700, 450)
    # The model: linked to the run, with a signature, and it predicts f(5) like the run did.
    (output,) = run.outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    assert logged.source_run_id == run.info.run_id and logged.name == "model"
    assert output.step == 99  # the last step; the final metrics there are the model's
    linked = {m.key: m.value for m in logged.metrics}
    assert linked["pred/after"] == run.data.metrics["pred/after"]
    assert linked["final/train_loss"] == run.data.metrics["final/train_loss"]
    assert logged.artifact_location.startswith((home / "mlartifacts").as_uri())
    assert os.environ.get("MLFLOW_TRACKING_URI") is None  # the fluent API's URI did not leak
    with tracking_store(client.tracking_uri):
        loaded = mlflow.pytorch.load_model(logged.model_uri)
    with torch.no_grad():
        assert loaded(torch.tensor([[5.0]])).item() == pytest.approx(run.data.metrics["pred/after"])
    assert list(elsewhere.iterdir()) == []


def test_failed_run_keeps_the_plots_of_what_was_recorded(home, client, composed, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pipeline, "final_losses", broken)  # fails after training, before the end
    with pytest.raises(RuntimeError, match="disk on fire"):  # the run's own error, unchanged
        run_composed(composed("experiment=seed_pipeline", "print_every=0", "max_epochs=7"))
    (run,) = all_runs(client)
    assert run.info.status == "FAILED"
    assert plot_files(client, run.info.run_id) == PLOTS
    assert run.outputs is None or not run.outputs.model_outputs  # no model for a failed run
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert steps == list(range(7))


def test_plots_and_model_can_be_turned_off(home, client, composed):
    run_composed(
        composed(
            "print_every=0", "max_epochs=3", "tracking.plots=false", "tracking.log_model=false"
        )
    )
    (run,) = all_runs(client)
    assert client.list_artifacts(run.info.run_id, "plots") == []
    assert run.outputs is None or not run.outputs.model_outputs


@pytest.mark.parametrize("alias", ["latest", "v3", "with space"])
def test_reserved_or_odd_alias_is_refused(composed, alias):
    with pytest.raises(ConfigError, match=r"tracking\.alias"):
        check_config(composed(f"tracking.alias='{alias}'"))


def history_of(**curves: list[float]) -> History:
    """A History fed as the recorder feeds it: one Rows message per curve."""
    history = History()
    for key, values in curves.items():
        key = key.replace("_", "/")
        steps = np.arange(len(values), dtype=np.int64)
        rows = Rows(
            keys=(key,), steps=steps, times=steps * 0, values=np.array(values).reshape(-1, 1)
        )
        history.add(rows)
    return history


def test_loss_is_on_a_log_scale_only_when_it_falls_by_decades():
    steep = history_of(train_loss=[100.0, 10.0, 1.0, 0.1])
    flat = history_of(train_loss=[2.0, 1.8, 1.7, 1.65], val_loss=[1.9])
    assert loss_figure(steep).axes[0].get_yscale() == "log"
    figure = loss_figure(flat)
    assert figure.axes[0].get_yscale() == "linear"
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == [
        "train/loss",
        "val/loss",
    ]


def test_history_keeps_long_curves_thinned_evenly_and_drops_nonfinite_points():
    history = history_of(train_loss=[float(v) for v in range(50_000)])
    steps, values = history.curves["train/loss"].finite()
    assert 10_000 <= len(steps) < 20_000  # bounded, whatever the run's length
    assert steps[0] == 0 and steps == sorted(steps) and values == [float(s) for s in steps]
    gaps = {b - a for a, b in itertools.pairwise(steps)}
    assert len(gaps) == 1  # evenly spaced
    diverged = history_of(train_loss=[1.0, float("nan"), float("inf"), 2.0])
    assert diverged.curves["train/loss"].finite() == ([0, 3], [1.0, 2.0])


def test_several_features_are_shown_as_predicted_against_actual():
    x = np.random.default_rng(0).normal(size=(20, 3))
    y = x @ np.array([[1.0], [2.0], [3.0]])
    data = PlotData(
        x={"train": x},
        y={"train": y},
        predicted={"train": y + 0.5},
        feature_names=["a", "b", "c"],
        target_names=["t"],
    )
    figure = fit_figure(data)
    axes = figure.axes[0]
    assert axes.get_title() == "Predicted against actual"
    (points,) = axes.collections
    assert np.allclose(points.get_offsets(), np.column_stack([y, y + 0.5]))
