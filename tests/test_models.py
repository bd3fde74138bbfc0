"""Models beyond the seed's: an MLP, a user's nn.Module and LightningModule, trained by the same
Trainer and recorded the same way (read back from a real store); and the one-line errors a model
of one's own can cause."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.helpers import PREDICT, TRAIN, all_runs, history

USER_MODELS = '''
import torch
from torch import nn
import lightning as L


class Net(nn.Module):
    def __init__(self, in_features, out_features, width=8):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, width), nn.Tanh(), nn.Linear(width, out_features))

    def forward(self, x):
        return self.body(x)


class Wide(nn.Module):
    """Ignores out_features: its output cannot match the targets."""

    def __init__(self, in_features):
        super().__init__()
        self.lin = nn.Linear(in_features, 5)

    def forward(self, x):
        return self.lin(x)


class Broken(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.lin = nn.Linear(in_features, out_features)

    def forward(self, x):
        raise RuntimeError("forward is broken on purpose")


class Own(L.LightningModule):
    """A LightningModule of its own: its step, its optimizer, its self.log."""

    def __init__(self, in_features, out_features, lr=0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("own/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
'''
SYNTHETIC = ("data=synthetic", "data.n_samples=64", "print_every=0")


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    """`usermodels` importable, as a package on PYTHONPATH makes it for the command line."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "usermodels.py").write_text(USER_MODELS)
    monkeypatch.syspath_prepend(str(folder))
    return folder


def only_run(client):
    (run,) = all_runs(client)
    return run


def test_an_mlp_trains_and_records_a_norm_per_tensor(train_in_process, client):
    status, out, err = train_in_process(
        "model=mlp", "model.hidden=[16,8]", "model.dropout=0.1", "model.norm=layer",
        *SYNTHETIC, "max_epochs=40", "optimizer=adam", "optimizer.lr=0.01", "print_every=10",
    )  # fmt: skip
    assert status == 0, err
    run = only_run(client)
    keys = set(run.data.metrics)
    # Linear, LayerNorm, ReLU, Dropout, Linear, LayerNorm, ReLU, Dropout, Linear: a norm per tensor.
    assert {"net.0.weight/norm", "net.0.bias/norm", "net.1.weight/norm", "net.8.bias/norm"} <= keys
    assert not {"weight/0_0", "ols/loss", "ols/gap", "optimum/gap"} & keys  # not a linear model
    losses = [v for _, v in history(client, run.info.run_id)]
    assert len(losses) == 40 and losses[-1] < losses[0] / 2
    assert "epoch 30, |w| = " in out and run.data.params["model.hidden"] == "[16, 8]"


def test_a_users_module_and_lightning_module_are_trained_and_recorded(
    train_in_process, client, user_models
):
    status, _, err = train_in_process(
        "model=custom", "model.target=usermodels.Net", "+model.kwargs.width=4", *SYNTHETIC,
        "max_epochs=10", "experiment_name=net",
    )  # fmt: skip
    assert status == 0, err
    status, _, err = train_in_process(
        "model=custom", "model.target=usermodels.Own", "+model.kwargs.lr=0.1", *SYNTHETIC,
        "max_epochs=10", "experiment_name=own",
    )  # fmt: skip
    assert status == 0, err
    net = client.search_runs([client.get_experiment_by_name("net").experiment_id])[0]
    assert {"body.0.weight/norm", "body.2.bias/norm", "final/train_loss"} <= set(net.data.metrics)
    own = client.search_runs([client.get_experiment_by_name("own").experiment_id])[0]
    run_id = own.info.run_id
    # Its own self.log through the Logger, the rows from what its training_step returned.
    own_loss = [v for _, v in history(client, run_id, "own/loss")]
    assert own_loss == pytest.approx([v for _, v in history(client, run_id, "train/loss")])
    assert [s for s, _ in history(client, run_id, "train/lr")] == list(range(10))
    assert set(history(client, run_id, "train/lr")) == {(s, 0.1) for s in range(10)}
    assert own.data.params["hparams.lr"] == "0.1" and own.data.params["hparams.in_features"] == "3"
    assert own.info.status == "FINISHED" and "final/train_loss" in own.data.metrics


@pytest.mark.slow
def test_a_users_model_is_served_where_its_package_is_not_importable(home, user_models):
    env = {**os.environ, "TRAINLAB_HOME": str(home), "PYTHONPATH": str(user_models)}
    trained = subprocess.run(
        [TRAIN, "model=custom",
         "model.target=usermodels.Net", *SYNTHETIC, "max_epochs=5", "x_test=[0.5,0.5,0.5]"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    run_id = trained.stdout.split("MLflow run ")[1].split()[0]
    del env["PYTHONPATH"]  # the model carries its class
    predicted = subprocess.run(
        [PREDICT, run_id, "0.5", "0.5", "0.5"], env=env, capture_output=True, text=True, timeout=120
    )
    assert predicted.returncode == 0, predicted.stderr
    from mlflow.tracking import MlflowClient

    recorded = MlflowClient(f"sqlite:///{home / 'mlflow.db'}").get_run(run_id).data.metrics
    assert float(predicted.stdout) == pytest.approx(recorded["pred/after"], rel=1e-6)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model.target=nowhere.Net"], "model.target='nowhere.Net' cannot be imported (No module"),
        (["model.target=usermodels.Net", "+model.kwargs.depth=3"], "unexpected keyword argument 'depth'"),
        (["model.target=usermodels.Wide"], "gives an output of shape (2, 5) for 2 rows; expected (2, 1)"),
        (["model.target=os.path"], "expected a torch.nn.Module or lightning.LightningModule"),
    ],
    ids=["not importable", "unknown argument", "output shape", "not a class"],
)  # fmt: skip
def test_a_bad_model_of_ones_own_is_one_line_and_no_run(
    train_in_process, client, user_models, overrides, expected
):
    status, _, err = train_in_process("model=custom", *overrides, *SYNTHETIC)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("trainlab-train: error: model")
    assert expected in err
    assert all_runs(client) == []


def test_a_model_that_raises_in_forward_fails_its_run_with_the_traceback(
    train_in_process, client, user_models, tmp_path
):
    status, _, err = train_in_process("model=custom", "model.target=usermodels.Broken", *SYNTHETIC)
    assert status == 2
    assert err.count("\n") == 1 and "forward is broken on purpose" in err
    run = only_run(client)
    assert run.info.status == "FAILED"
    text = client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))
    with open(text) as file:
        assert "Traceback" in file.read()


def test_the_notes_engines_refuse_other_models(train_in_process, client):
    status, _, err = train_in_process("engine=numpy", "model=mlp")
    assert status == 2
    assert "engine=numpy does not support model=mlp; expected model=linear" in err
    assert all_runs(client) == []
