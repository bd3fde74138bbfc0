"""A logged model runs no code when trainlab loads it: a model artifact replaced by a crafted
pickle (whose `__reduce__` would create a marker file) is refused in one line by trainlab-predict
and trainlab-evaluate, and the marker never appears; a model pickled by an older trainlab loads
only with `--trust-pickle`. Real runs in a real store, the commands as subprocesses."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.helpers import BIN, all_runs, model_folder, store

PREDICT, EVALUATE = str(BIN / "trainlab-predict"), str(BIN / "trainlab-evaluate")


class Planted:
    """Unpickling this opens (creates) the marker file: a stand-in for any code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A regression (the seed) and a classifier (iris) trained in one store:
    (home, {"regression": run id, "classifier": run id})."""
    home = tmp_path_factory.mktemp("safety-home")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["TRAINLAB_HOME"] = str(home)
    runs = {}
    for kind, overrides in (
        ("regression", ["experiment=seed_pipeline"]),
        ("classifier", ["experiment=iris_softmax", "max_epochs=20"]),
    ):
        done = subprocess.run(
            [str(BIN / "trainlab-train"), *overrides, "print_every=0", "tracking.plots=false"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        known = {r.info.run_id for r in all_runs(store(home))} - set(runs.values())
        (runs[kind],) = known
    yield home, runs


def command(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["TRAINLAB_HOME"] = str(home)
    return subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=180)


def pickled_model_pth(folder: Path, marker: Path) -> None:
    """The issue's attack: data/model.pth as MLflow's pickle format names it."""
    (folder / "data" / "model.pth").write_bytes(pickle.dumps(Planted(marker)))
    (folder / "data" / "pickle_module_info.txt").write_text("pickle")
    (folder / "data" / "model.pt2").unlink()


def pickle_as_pt2(folder: Path, marker: Path) -> None:
    """model.pt2 itself replaced by a pickle."""
    (folder / "data" / "model.pt2").write_bytes(pickle.dumps(Planted(marker)))


def loader_code(folder: Path, marker: Path) -> None:
    """MLmodel pointed at a loader module of the attacker's, on a code/ folder."""
    (folder / "code").mkdir()
    (folder / "code" / "planted_loader.py").write_text(
        f"open({str(marker)!r}, 'w')\ndef _load_pyfunc(path):\n    raise SystemExit\n"
    )
    text = (folder / "MLmodel").read_text()
    text = text.replace("loader_module: mlflow.pytorch", "loader_module: planted_loader")
    (folder / "MLmodel").write_text(text.replace("code: null", "code: code"))


def classifier_network(folder: Path, marker: Path) -> None:
    """The classifier's network artifact replaced by a pickle (as an older trainlab logged it)."""
    network = folder / "artifacts" / "network"
    shutil.rmtree(network)
    network.write_bytes(pickle.dumps(Planted(marker)))


def classifier_code(folder: Path, marker: Path) -> None:
    """The classifier's model-from-code file rewritten: trainlab must not run it."""
    (code,) = folder.glob("served_classifier.py")
    code.write_text(f"open({str(marker)!r}, 'w')\n" + code.read_text())


@pytest.mark.parametrize(
    ("kind", "attack"),
    [
        ("regression", pickled_model_pth),
        ("regression", pickle_as_pt2),
        ("regression", loader_code),
        ("classifier", classifier_network),
        ("classifier", classifier_code),
    ],
)
def test_a_planted_pickle_or_code_never_runs_under_predict_or_evaluate(
    trained, artifacts, tmp_path, kind, attack
):
    home, runs = trained
    marker = tmp_path / "marker"
    attack(artifacts(kind), marker)
    rows = tmp_path / "rows.csv"
    rows.write_text("x,y\n1,2\n" if kind == "regression" else "a,b,c,d,species\n1,2,3,4,setosa\n")
    features = "5" if kind == "regression" else "5.1,3.5,1.4,0.2"
    for done in (
        command(home, PREDICT, runs[kind], "--row", features),
        command(home, EVALUATE, runs[kind], "--data", str(rows)),
    ):
        assert not marker.exists(), f"the planted code ran: {done.args}"
        if kind == "classifier" and attack is classifier_code:
            # The code file is never run; the model itself is intact and answers.
            assert done.returncode in (0, 2), done.stderr
            continue
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert "error: " in done.stderr and "--trust-pickle" in done.stderr, done.stderr
    assert not marker.exists()


def test_predict_answers_with_the_pt2_model_and_the_classifier(trained):
    home, runs = trained
    answer = command(home, PREDICT, runs["regression"], "5")
    assert answer.returncode == 0, answer.stderr
    assert 9 < float(answer.stdout) < 11
    answer = command(home, PREDICT, runs["classifier"], "--row", "5.1,3.5,1.4,0.2")
    assert answer.returncode == 0, answer.stderr
    label, *probabilities = answer.stdout.split()
    assert label == "setosa" and len(probabilities) == 3
    for kind in ("regression", "classifier"):
        (pt2,) = model_folder(home, runs[kind]).rglob("model.pt2")
        assert not list(model_folder(home, runs[kind]).rglob("*.pkl"))
        assert not list(model_folder(home, runs[kind]).rglob("model.pth"))
        assert pt2.stat().st_size > 0


def test_trust_pickle_is_the_only_way_to_an_older_pickled_model(trained, artifacts, tmp_path):
    """A model as trainlab used to log it (torch.save of the module, pickled) loads with
    --trust-pickle and is refused without it."""
    home, runs = trained
    folder = artifacts("regression")
    older = torch.nn.Linear(1, 1)
    with torch.no_grad():
        older.weight.fill_(2.0), older.bias.fill_(0.0)  # f(5) = 10
    torch.save(older, folder / "data" / "model.pth", pickle_module=pickle)
    (folder / "data" / "pickle_module_info.txt").write_text("pickle")
    (folder / "data" / "model.pt2").unlink()
    refused = command(home, PREDICT, runs["regression"], "5")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "pickled" in refused.stderr and "--trust-pickle" in refused.stderr
    trusted = command(home, PREDICT, runs["regression"], "5", "--trust-pickle")
    assert trusted.returncode == 0, trusted.stderr
    assert float(trusted.stdout) == pytest.approx(10.0)


BRANCHY = '''
from torch import nn


class Branchy(nn.Module):
    """Its output depends on the values it is given: torch.export cannot trace it."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.lin = nn.Linear(in_features, out_features)

    def forward(self, x):
        if float(x.sum()) > 0:
            return self.lin(x)
        return -self.lin(x)
'''


def test_a_model_that_neither_exports_nor_rebuilds_is_said_in_one_line_and_the_run_finishes(
    train_in_process, client, tmp_path, monkeypatch
):
    """Its class is on the trainer's sys.path only: the recorder cannot build it again from the
    run's config to check its weights (models/weights.py), so nothing is logged; one line says
    both reasons. (A class the recorder can import: tests/test_weights_model.py.)"""
    (tmp_path / "branchy.py").write_text(BRANCHY)
    monkeypatch.syspath_prepend(str(tmp_path))
    status, out, err = train_in_process(
        "model=custom", "model.target=branchy.Branchy", "data=synthetic", "data.n_samples=32",
        "print_every=0", "max_epochs=3", "tracking.plots=false",
    )  # fmt: skip
    assert status == 0, err
    lines = [x for x in (out + err).splitlines() if "model not logged" in x]
    assert len(lines) == 1 and "torch.export cannot export it" in lines[0], out + err
    assert "model.target='branchy.Branchy' cannot be imported" in lines[0], lines[0]
    (run,) = all_runs(client)
    assert run.info.status == "FINISHED" and not run.outputs.model_outputs
