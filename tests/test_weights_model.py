"""A model torch.export cannot export (tests/user_field.py's ValueBranching: Python branching on
its inputs' values) is logged as its weights and the run's model config (models/weights.py), and
answers what the run's trained module answered through trainlab-predict, trainlab-evaluate,
`mlflow.pyfunc.load_model` and `mlflow models serve`; a crafted weights file or config runs
nothing. Real runs in a real store, the commands as subprocesses (PYTHONPATH: the checkout, where
`tests.user_field` is, as a user's package would be)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest

from tests.helpers import BIN, all_runs, model_folder, store

PREDICT, EVALUATE = str(BIN / "trainlab-predict"), str(BIN / "trainlab-evaluate")
ROOT = Path(__file__).resolve().parents[1]
BRANCHING = ["model=custom", "model.target=tests.user_field.ValueBranching"]
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]  # the experiment's x_test
IRIS = ("setosa", "versicolor", "virginica")


class Planted:
    """Unpickling this opens (creates) the marker file: a stand-in for any code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(TRAINLAB_HOME=str(home), PYTHONPATH=str(ROOT))
    return env


def command(home: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        list(args), env=environment(home), cwd=home, capture_output=True, text=True, timeout=300
    )
    return done


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A regression (the seed's data) and a classifier (iris), both ValueBranching:
    (home, {"regression": run id, "classifier": run id})."""
    home = tmp_path_factory.mktemp("weights-home")
    runs: dict[str, str] = {}
    for kind, overrides in (
        ("regression", ["experiment=seed_pipeline", "+model.kwargs.clip=100"]),
        ("classifier", ["experiment=iris_softmax", "max_epochs=10"]),
    ):
        done = command(
            home, str(BIN / "trainlab-train"), *overrides, *BRANCHING, "print_every=0",
            "tracking.plots=false",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "model not logged" not in done.stdout + done.stderr
        (runs[kind],) = {r.info.run_id for r in all_runs(store(home))} - set(runs.values())
    yield home, runs


def after(home: Path, run_id: str) -> dict[str, float]:
    return store(home).get_run(run_id).data.metrics


def test_it_is_logged_as_weights_and_answers_what_the_trained_module_did(trained, monkeypatch):
    home, runs = trained
    for kind in runs:
        folder = model_folder(home, runs[kind])
        files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert {"data/weights/weights.pt", "data/weights/model.json"} <= files
        assert not [f for f in files if f.endswith((".pt2", ".pth", ".pkl", ".py"))], files
        assert "loader_module: trainlab.models.weights" in (folder / "MLmodel").read_text()
    # trainlab-predict: the seed's f(5) is the run's pred/after, computed by the trained module.
    seed = runs["regression"]
    answer = command(home, PREDICT, seed, "5")
    assert answer.returncode == 0, answer.stderr
    assert float(answer.stdout) == pytest.approx(after(home, seed)["pred/after"], rel=1e-6)
    iris = runs["classifier"]
    answer = command(home, PREDICT, iris, *(f"--row={','.join(map(str, r))}" for r in IRIS_ROWS))
    assert answer.returncode == 0, answer.stderr
    metrics = after(home, iris)
    for row, line in enumerate(answer.stdout.splitlines()):
        label, *probabilities = line.split()
        printed = dict(p.split("=") for p in probabilities)
        expected = {c: metrics[f"pred/after/{row}_{k}"] for k, c in enumerate(IRIS)}
        assert label == max(expected, key=expected.__getitem__)
        for name in IRIS:
            assert float(printed[name]) == pytest.approx(expected[name], rel=1e-2, abs=1e-6)
    # MLflow's own loader, through trainlab's loader_module.
    monkeypatch.syspath_prepend(str(ROOT))
    model = mlflow.pyfunc.load_model(str(model_folder(home, seed)))
    output = model.predict(np.array([[5.0]], dtype=np.float32))
    model = mlflow.pyfunc.load_model(str(model_folder(home, iris)))
    table = model.predict(np.array(IRIS_ROWS, dtype=np.float32))
    assert output.shape == (1, 1)
    assert float(output[0, 0]) == pytest.approx(after(home, seed)["pred/after"], rel=1e-6)
    for row in range(len(IRIS_ROWS)):
        for k, name in enumerate(IRIS):
            expected = metrics[f"pred/after/{row}_{k}"]
            assert table[f"probability_{name}"][row] == pytest.approx(expected, rel=1e-5)


def test_evaluate_scores_it(trained, tmp_path):
    home, runs = trained
    rows = tmp_path / "rows.csv"
    rows.write_text("x,y\n1,2.1\n2,4.2\n3,5.8\n")
    done = command(home, EVALUATE, runs["regression"], "--data", str(rows))
    assert done.returncode == 0, done.stdout + done.stderr


def planted_weights(folder: Path, marker: Path) -> None:
    """weights.pt replaced by a pickle whose loading would run code."""
    (folder / "data" / "weights" / "weights.pt").write_bytes(pickle.dumps(Planted(marker)))


def torch_saved_object(folder: Path, marker: Path) -> None:
    """weights.pt as torch.save writes it, holding an object instead of tensors."""
    import torch

    torch.save({"lin.weight": Planted(marker)}, folder / "data" / "weights" / "weights.pt")


def config_names_a_function(folder: Path, marker: Path) -> None:
    """model.json's kwargs naming a callable that is no model class (open(marker, 'w'))."""
    spec_file = folder / "data" / "weights" / "model.json"
    spec = json.loads(spec_file.read_text())
    planted = {"_target_": "builtins.open", "file": str(marker), "mode": "w"}
    spec["model"]["kwargs"]["clip"] = planted
    spec_file.write_text(json.dumps(spec))


def config_names_a_builder(folder: Path, marker: Path) -> None:
    """model.json's top-level target replaced by a function that is not trainlab's builder."""
    spec_file = folder / "data" / "weights" / "model.json"
    spec = json.loads(spec_file.read_text())
    spec["model"] = {"_target_": "builtins.open", "file": str(marker), "mode": "w"}
    spec_file.write_text(json.dumps(spec))


def config_says_other_arguments(folder: Path, marker: Path) -> None:
    """model.json rewritten to build the same class with other arguments: it would build and
    take the weights, but it is not what the run recorded."""
    spec_file = folder / "data" / "weights" / "model.json"
    spec = json.loads(spec_file.read_text())
    spec["model"]["kwargs"]["clip"] = 0.5
    spec_file.write_text(json.dumps(spec))


@pytest.mark.parametrize(
    "attack",
    [
        planted_weights,
        torch_saved_object,
        config_names_a_function,
        config_names_a_builder,
        config_says_other_arguments,
    ],
)
def test_planted_weights_or_config_never_run(trained, artifacts, tmp_path, monkeypatch, attack):
    home, runs = trained
    marker = tmp_path / "marker"
    attack(artifacts("regression"), marker)
    rows = tmp_path / "rows.csv"
    rows.write_text("x,y\n1,2\n")
    # Both commands load through commands/logged_model.py: evaluate once, for the attack.
    commands = [[PREDICT, runs["regression"], "5"]]
    if attack is planted_weights:
        commands.append([EVALUATE, runs["regression"], "--data", str(rows)])
    for done in (command(home, *args) for args in commands):
        assert not marker.exists(), f"the planted code ran: {done.args}"
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert "error: " in done.stderr and "train it again" in done.stderr, done.stderr
    if attack is config_says_other_arguments:
        assert "model.kwargs.clip=0.5 where its run" in done.stderr, done.stderr
        return  # a model's folder alone has no run to check it by: only trainlab's loaders do
    # MLflow's own loader reaches the same checks through the loader_module.
    monkeypatch.syspath_prepend(str(ROOT))
    with pytest.raises(ValueError, match=r"weights\.pt|model\.json"):
        mlflow.pyfunc.load_model(str(model_folder(home, runs["regression"])))
    assert not marker.exists()


@pytest.mark.slow
def test_mlflow_models_serve_answers_what_the_run_predicted(trained, monkeypatch):
    """`mlflow models serve` (a real server process) loads it through trainlab's loader_module."""
    from tests.test_predict import served

    home, runs = trained
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    seed = runs["regression"]
    answer = served(home, store(home), f"runs:/{seed}/model", [[5.0]])
    assert answer == [[pytest.approx(after(home, seed)["pred/after"], rel=1e-6)]]


# lightning-hydra-template's way: a LightningModule handed its network and two partials.
TEMPLATE_MODEL = {
    "_target_": "trainlab.models.user_model.custom_model",
    "target": "tests.user_field.DigitsLitModule",
    "kwargs": {
        "net": {
            "_target_": "torch.nn.Sequential",
            "_args_": [
                {"_target_": "torch.nn.Flatten"},
                {
                    "_target_": "tests.user_field.ValueBranching",
                    "in_features": 64,
                    "out_features": 3,
                },
            ],
        },
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01},
        "scheduler": {
            "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
            "_partial_": True,
            "mode": "min",
        },
    },
}


def test_a_lightning_module_with_partials_comes_back_with_its_weights_and_dtype(tmp_path):
    """No training: a module built from the config, its weights saved and read back into a new
    one built from the same config (float64 stays float64)."""
    import torch
    from hydra.utils import instantiate

    from trainlab.models.linear import ClassProbabilities
    from trainlab.models.weights import load_weights, save_weights, served_as

    trained = ClassProbabilities(instantiate(TEMPLATE_MODEL, _convert_="all")).double().eval()
    rebuild = {"model": TEMPLATE_MODEL, "shapes": {}, "served_as": served_as(trained)[0]}
    save_weights(tmp_path / "weights", trained, rebuild, list(IRIS))
    rebuilt, classes = load_weights(tmp_path / "weights")
    assert classes == list(IRIS) and rebuild["served_as"] == ["probabilities"]
    rows = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(rebuilt(rows), trained(rows))
    assert next(rebuilt.parameters()).dtype == torch.float64


@pytest.mark.parametrize(
    "model",
    [
        {"_target_": "os.system", "command": "true"},  # a function, not trainlab's builder
        {**TEMPLATE_MODEL, "kwargs": {"net": {"_target_": "os.system", "_partial_": True}}},
        {  # deep inside positional arguments
            "_target_": "torch.nn.Sequential",
            "_args_": [{"_target_": "subprocess.Popen", "args": ["true"]}],
        },
        {"_target_": "torch.optim.Adam", "params": []},  # a class, but no module and no partial
    ],
)
def test_a_config_naming_anything_but_model_classes_is_refused_before_anything_is_built(
    tmp_path, model
):
    from trainlab.models.weights import FORMAT, SPEC, UnsafeWeights, read_spec

    tmp_path.joinpath(SPEC).write_text(
        json.dumps({"format": FORMAT, "model": model, "shapes": {}, "served_as": [], "classes": []})
    )
    with pytest.raises(UnsafeWeights, match="which is not a model class"):
        read_spec(tmp_path)
