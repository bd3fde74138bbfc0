"""Whatever `lightning.Trainer.fit` trains, `trainlab-train` trains and records: the field's own
modules as they are (Lightning's demo classes; a module and network in lightning-hydra-template's
shapes, with a partial and a scheduler in its hyper-parameters), batches of any structure, inputs
of any rank, killed and resumed; checkpoints that rebuild only what the run's config names."""

from __future__ import annotations

import os
import pickle
import signal
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

import trainlab
from tests.helpers import all_runs, history, run_cli, start_cli, store
from tests.test_bad_inputs import assert_nothing_running, assert_one_error_line
from tests.user_field import DigitImages

ROOT = Path(__file__).resolve().parents[1]
QUIET = ("print_every=0", "tracking.system_metrics=false")
BORING = "lightning.pytorch.demos.boring_classes"
# lightning-hydra-template's MNIST module, as its configs/model/mnist.yaml hands it over.
TEMPLATE = (
    "model=custom",
    "model.target=tests.user_field.DigitsLitModule",
    "+model.kwargs.net._target_=tests.user_field.SimpleDenseNet",
    "+model.kwargs.net.lin1_size=32",
    "+model.kwargs.optimizer._target_=torch.optim.Adam",
    "+model.kwargs.optimizer._partial_=true",
    "+model.kwargs.optimizer.lr=0.01",
    "+model.kwargs.scheduler._target_=torch.optim.lr_scheduler.ReduceLROnPlateau",
    "+model.kwargs.scheduler._partial_=true",
    "+model.kwargs.scheduler.mode=min",
    "data=custom",
    "data.target=tests.user_field.DigitImages",
)


def only_run(client):
    (run,) = all_runs(client)
    return client.get_run(run.info.run_id)


def steps_of(client, run_id: str, key: str) -> list[int]:
    return [step for step, _ in history(client, run_id, key)]


@pytest.mark.parametrize(
    "model",
    [f"{BORING}.BoringModel", f"{BORING}.DemoModel"],
)
def test_lightnings_own_demo_classes_train_and_are_recorded(train_in_process, client, model):
    data = (f"data.target={BORING}.BoringDataModule", "data=custom", "max_epochs=1")
    status, _, err = train_in_process("model=custom", f"model.target={model}", *data, *QUIET)
    assert status == 0, err
    run = only_run(client)
    assert run.info.status == "FINISHED"
    # BoringDataModule: 64 random rows, one a batch: a loss per step, from training_step.
    assert steps_of(client, run.info.run_id, "train/loss") == list(range(64))
    assert "final/train_loss" in run.data.metrics
    assert run.outputs.model_outputs, "the module's forward takes its tensor batches: logged"
    inputs = {i.dataset.name for i in run.inputs.dataset_inputs}
    assert inputs == {"BoringDataModule"}


def test_a_template_module_trains_logs_its_own_names_and_tests_itself(train_in_process, client):
    status, _, err = train_in_process(*TEMPLATE, "max_epochs=2", *QUIET)
    assert status == 0, err
    run = only_run(client)
    metrics, run_id = run.data.metrics, run.info.run_id
    # Its own epoch train/loss kept under Lightning's suffix, beside trainlab's per-step rows.
    assert steps_of(client, run_id, "train/loss_epoch") == [7, 15]
    assert steps_of(client, run_id, "train/loss") == list(range(16))
    assert {"train/acc", "val/acc", "val/loss", "test/acc", "test/loss"} <= set(metrics)
    epochs = steps_of(client, run_id, "epoch")
    assert len(epochs) == len(set(epochs)), "epoch is recorded once per step"
    # What the module logged is the run's end: its own epoch loss, its own val/loss.
    assert metrics["final/train_loss"] == pytest.approx(metrics["train/loss_epoch"])
    assert metrics["final/val_loss"] == pytest.approx(metrics["val/loss"])
    params = run.data.params
    assert params["model.kwargs.optimizer._target_"] == "torch.optim.Adam"
    assert not {"data.val_split", "data.standardize", "data.batch_size"} & set(params)


def kill_after_commit(client, process) -> str:
    """The run id, once a checkpoint has committed; then the trainer is SIGKILLed."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = (
            all_runs(client) if (Path(os.environ["TRAINLAB_HOME"]) / "mlflow.db").exists() else []
        )
        if runs and int(runs[0].data.tags.get("trainlab.checkpoint.step", "0")) >= 8:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
            return runs[0].info.run_id
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.kill()
    raise AssertionError("no checkpoint was committed")


@pytest.mark.slow
def test_a_template_module_killed_resumes_from_its_checkpoint(
    train_in_process, client, home, monkeypatch
):
    """Its checkpoint holds a network, an optimizer partial and a scheduler partial (the
    template's save_hyperparameters): resume rebuilds exactly those, and the history has no
    gap and no repeat."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    args = (*TEMPLATE, "max_epochs=40", "checkpoint.every_n_steps=4", "seed=3", *QUIET)
    run_id = kill_after_commit(client, start_cli(home, *args))
    status, out, err = train_in_process(*args, f"resume={run_id}")
    assert status == 0, err
    assert f"Resuming run {run_id} at step " in out
    run = only_run(client)
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert steps_of(client, run_id, "train/loss") == list(range(40 * 8))
    assert steps_of(client, run_id, "train/loss_epoch") == [8 * e + 7 for e in range(40)]


def planted_checkpoint(source: Path, target: Path, marker: Path) -> None:
    """The run's own checkpoint with an object added that runs a command when unpickled."""

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    state = torch.load(source, map_location="cpu", weights_only=False)
    state["hyper_parameters"]["planted"] = Planted()
    torch.save(state, target, pickle_module=pickle)


def test_a_checkpoint_rebuilds_only_the_classes_its_run_names(
    train_in_process, client, home, tmp_path
):
    args = (*TEMPLATE, "max_epochs=1", "checkpoint.every_n_steps=4", *QUIET)
    assert train_in_process(*args)[0] == 0
    run = only_run(client)
    last = Path(run.data.tags["trainlab.checkpoint.dir"]) / "last.ckpt"
    marker = tmp_path / "ran"
    planted = tmp_path / "planted.ckpt"
    planted_checkpoint(last, planted, marker)
    status, _, err = train_in_process(*args, "max_epochs=2", f"resume={planted}")
    assert_one_error_line(status, err, "would have to run the class posix.system")
    assert "recorded config does not name" in err
    assert not marker.exists(), "the planted command ran"
    assert_nothing_running(home)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


@pytest.mark.parametrize("kind", ["dataclass", "namedtuple"])
def test_structured_and_dict_batches_reach_the_users_module_as_they_are(
    train_in_process, client, kind
):
    args = ("model=custom", "data=custom", "max_epochs=2", *QUIET)
    status, _, err = train_in_process(
        *args, "model.target=tests.user_field.StructuredRegressor",
        "data.target=tests.user_field.StructuredBatches", f"+data.kwargs.kind={kind}",
    )  # fmt: skip
    assert status == 0, err
    run = only_run(client)
    assert steps_of(client, run.info.run_id, "train/loss") == list(range(8))
    assert run.data.metrics["final/train_loss"] < history(client, run.info.run_id)[0][1]
    profile = run.inputs.dataset_inputs[0].dataset.profile
    assert "(32, 4) float32, (32, 1) float32" in profile


def test_dict_batches_train_a_module_that_reads_them_by_name(train_in_process, client):
    status, out, err = train_in_process(
        "model=custom", "model.target=tests.user_field.DictRegressor",
        "data=custom", "data.target=tests.user_field.DictBatches", "max_epochs=3", *QUIET,
    )  # fmt: skip
    assert status == 0, err
    run = only_run(client)
    assert {"train/mse_step", "train/mse_epoch", "hparams.lr"} <= {
        *run.data.metrics,
        *run.data.params,
    }
    assert "no model logged" in out  # a dict is no input MLflow's PyTorch model takes


def test_trainlabs_module_refuses_dict_batches_in_one_line(train_in_process, home):
    status, _, err = train_in_process(
        "data=custom", "data.target=tests.user_field.DictBatches", "model=mlp", *QUIET
    )
    assert_one_error_line(status, err, "gives dict batches; expected batches of two tensors")
    assert_nothing_running(home)


def test_sequences_and_token_ids_train_in_trainlabs_module(train_in_process, client):
    sequence = ("model=custom", "model.target=tests.user_field.LastStep", "data=custom",
                "data.target=tests.user_field.Sequences", "max_epochs=3", *QUIET)  # fmt: skip
    status, _, err = train_in_process(*sequence, "experiment_name=sequences")
    assert status == 0, err
    tokens = ("model=custom", "model.target=tests.user_field.TokenClassifier", "data=custom",
              "data.target=tests.user_field.Tokens", "loss=cross_entropy", "optimizer=adam",
              "optimizer.lr=0.02", "max_epochs=12", *QUIET)  # fmt: skip
    status, _, err = train_in_process(*tokens, "experiment_name=tokens")
    assert status == 0, err
    runs = {r.info.experiment_id: client.get_run(r.info.run_id) for r in all_runs(client)}
    assert len(runs) == 2
    token_run = next(r for r in runs.values() if "val/accuracy" in r.data.metrics)
    assert token_run.data.metrics["val/accuracy"] > 0.7  # int64 (N, T) ids through an Embedding
    assert token_run.outputs.model_outputs


def test_a_sweep_objective_the_run_never_logged_is_one_line(train_in_process, home):
    status, _, err = train_in_process("max_epochs=2", "sweep.objective=val/acc", *QUIET)
    assert_one_error_line(status, err, "sweep.objective='val/acc': the run never logged it")
    assert "final/train_loss" in err
    assert_nothing_running(home)


def test_a_sweep_objective_names_a_metric_the_module_logs(client):
    result = trainlab.train(
        [*TEMPLATE, "max_epochs=1", "sweep.objective=val/acc", "sweep.direction=maximize",
         *QUIET]
    )  # fmt: skip
    recorded = client.get_run(result.run_id).data.metrics
    assert result.objective == pytest.approx(recorded["val/acc"])
    assert result.objective != pytest.approx(recorded["final/val_loss"])


# The template's configs/model/mnist.yaml, as an option file of the user's own config folder:
# a network built from positional arguments (_args_), a list argument, two partials.
OPTION_FILE = """\
defaults:
  - custom
target: tests.user_field.DigitsLitModule
kwargs:
  net:
    _target_: torch.nn.Sequential
    _args_:
      - _target_: torch.nn.Flatten
      - _target_: tests.user_field.Stacked
        in_features: 64
        out_features: 10
        widths: [32, 16]
  optimizer:
    _target_: torch.optim.Adam
    _partial_: true
    lr: 0.01
    betas: [0.9, 0.99]
  scheduler:
    _target_: torch.optim.lr_scheduler.StepLR
    _partial_: true
    step_size: 1
"""


def test_a_config_folders_module_option_trains_reruns_and_predicts(
    train_in_process, client, home, tmp_path
):
    folder = tmp_path / "conf"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "digits_net.yaml").write_text(OPTION_FILE)
    args = ("--config-dir", str(folder), "model=digits_net", "data=custom",
            "data.target=tests.user_field.DigitImages", "max_epochs=2", *QUIET)  # fmt: skip
    status, _, err = train_in_process(*args)
    assert status == 0, err
    first = only_run(client)
    assert first.data.params["model.kwargs.net._args_"].startswith("[{")
    status, _, err = train_in_process(f"rerun={first.info.run_id}", *QUIET)
    assert status == 0, err
    again = next(r for r in all_runs(client) if r.info.run_id != first.info.run_id)
    assert history(client, again.info.run_id) == history(client, first.info.run_id)

    images = DigitImages(rows=600)
    images.setup("fit")
    x, labels = images.val_set.tensors
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        model = mlflow.pyfunc.load_model(f"runs:/{first.info.run_id}/model")
        scores = np.asarray(model.predict(x.numpy()))
    assert scores.shape == (len(x), 10)  # a batch of 1x8x8 images in, a score per digit out
    accuracy = (scores.argmax(axis=1) == labels.numpy()).mean()
    assert accuracy == pytest.approx(
        client.get_run(first.info.run_id).data.metrics["val/acc"], abs=0.02
    )


def test_early_stopping_watches_a_metric_the_module_logs(train_in_process, client):
    args = (*TEMPLATE, "max_epochs=60", "early_stop.monitor=val/acc", "early_stop.mode=max")
    status, out, err = train_in_process(*args, "early_stop.patience=2", *QUIET)
    assert status == 0, err
    run = only_run(client)
    epochs = len(history(client, run.info.run_id, "val/acc"))
    assert epochs < 60 and run.data.tags["trainlab.early_stop.reason"] == "patience"
    assert "val/acc did not improve for 2 epochs" in out


@pytest.mark.slow
def test_a_grid_sweep_ranks_its_jobs_by_the_objective_the_module_logs(home, monkeypatch):
    """sweep.objective=val/acc sweep.direction=maximize: the parent's best is the job with the
    highest val/acc, and its best value is that val/acc (not a loss)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    done = run_cli(
        "-m", *TEMPLATE, "+model.kwargs.optimizer.weight_decay=0.0,3.0", "max_epochs=2",
        "sweep.objective=val/acc", "sweep.direction=maximize", *QUIET, home=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    client = store(home)
    runs = [client.get_run(r.info.run_id) for r in all_runs(client)]
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r is not parent]
    assert len(children) == 2
    assert {c.data.tags["trainlab.sweep.objective"] for c in children} == {"val/acc"}
    best = max(children, key=lambda c: c.data.metrics["val/acc"])
    assert parent.data.tags["trainlab.sweep.best_run_id"] == best.info.run_id
    assert parent.data.metrics["best/final_loss"] == pytest.approx(best.data.metrics["val/acc"])
