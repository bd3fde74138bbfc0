"""`data=custom`: a LightningDataModule of the user's (tests/user_data.py), fitted by the same
Trainer and recorded as built-in data is (read back from a real store); its test_dataloader
scored as scikit-learn scores the same predictions; a resumed run continues the trajectory; and
each bad input one line, exit 2, no run left RUNNING."""

from __future__ import annotations

import lightning as L
import mlflow
import numpy as np
import pytest
import sklearn.metrics as sk
import torch

from tests.helpers import all_runs, history
from tests.test_bad_inputs import assert_nothing_running, assert_one_error_line
from tests.user_data import Flowers, Regression

QUIET = ("print_every=0", "tracking.system_metrics=false")
REGRESSION = ("data=custom", "data.target=tests.user_data.Regression", "model=mlp", "max_epochs=3")


def only_run(client, experiment: str = "trainlab"):
    runs = all_runs(client)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    return runs[0]


def metric_names(run) -> set[str]:
    return set(run.data.metrics)


def served(home, run_id: str, x: torch.Tensor) -> np.ndarray:
    """The logged model's answers for rows, as `mlflow models serve` would give them."""
    model_uri = f"runs:/{run_id}/model"
    # The store's URI for this call only: a process-wide one would outlive the test.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        answers = mlflow.pyfunc.load_model(model_uri).predict(x.numpy())
    return np.asarray(answers)  # a classifier's: a DataFrame of the label and p(class)


def test_a_regression_datamodule_records_what_built_in_data_records(
    train_in_process, client, home, tmp_path
):
    status, _, err = train_in_process(*REGRESSION, "data._target_=tests.user_data.Regression", "+data.kwargs.batch_size=8", *QUIET)  # fmt: skip
    assert status == 0, err
    mine = only_run(client)
    client.delete_run(mine.info.run_id)
    built_in = ("data=synthetic", "data.n_features=3", "data.n_targets=2", "data.val_split=0.2",
                "data.test_split=0.2", "data.batch_size=8", "model=mlp", "max_epochs=3")  # fmt: skip
    assert train_in_process(*built_in, *QUIET)[0] == 0
    theirs = client.get_run(
        next(r for r in all_runs(client) if r.info.run_id != mine.info.run_id).info.run_id
    )
    assert metric_names(mine) == metric_names(theirs)
    assert {"final/val_loss", "test/r2", "val/loss"} <= metric_names(mine)
    params = mine.data.params
    assert params["data.target"] == "tests.user_data.Regression"  # both spellings: one key
    assert params["data.kwargs.batch_size"] == "8"
    inputs = {(i.dataset.name, i.tags[0].value) for i in mine.inputs.dataset_inputs}
    assert inputs == {("Regression", "training"), ("Regression", "validation")}

    # test/* are scikit-learn's on the logged model's predictions for the test_dataloader's rows
    data = Regression()
    data.setup("test")
    x, y = data.test_set.tensors
    predicted = served(home, mine.info.run_id, x)
    assert predicted.shape == (len(x), 2)  # the signature came from a real batch: 3 features in
    metrics = mine.data.metrics
    assert metrics["test/r2"] == pytest.approx(sk.r2_score(y, predicted), rel=1e-5)
    assert metrics["test/mae"] == pytest.approx(sk.mean_absolute_error(y, predicted), rel=1e-5)
    rmse = np.sqrt(sk.mean_squared_error(y, predicted))
    assert metrics["test/rmse"] == pytest.approx(rmse, rel=1e-5)


def test_a_classifier_datamodule_from_a_config_folder_names_its_classes(
    train_in_process, client, home, tmp_path
):
    folder = tmp_path / "conf"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "flowers.yaml").write_text(
        "defaults:\n  - custom\ntarget: tests.user_data.Flowers\nkwargs:\n  batch_size: 15\n"
    )
    common = (
        "loss=cross_entropy",
        "model=mlp",
        "model.hidden=[8]",
        "optimizer.lr=0.5",
        "max_epochs=4",
        *QUIET,
    )
    status, _, err = train_in_process("--config-dir", str(folder), "data=flowers", *common)
    assert status == 0, err
    mine = only_run(client)
    client.delete_run(mine.info.run_id)
    built_in = ("data=synthetic", "data.n_features=2", "data.n_classes=3", "data.test_split=0.3")
    assert train_in_process(*built_in, *common)[0] == 0
    theirs = next(r for r in all_runs(client) if r.info.run_id != mine.info.run_id)
    assert metric_names(mine) == metric_names(client.get_run(theirs.info.run_id))
    assert mine.data.params["data.kwargs.batch_size"] == "15"

    L.seed_everything(0, verbose=False)  # the run's seed: Flowers splits at random in setup()
    data = Flowers()
    data.setup("fit")
    x, labels = data.test_set.tensors
    probabilities = served(home, mine.info.run_id, x)[:, 1:].astype(float)  # label, then p(class)
    chosen = probabilities.argmax(axis=1)
    metrics = mine.data.metrics
    assert metrics["test/accuracy"] == pytest.approx(sk.accuracy_score(labels, chosen))
    assert metrics["test/f1"] == pytest.approx(sk.f1_score(labels, chosen, average="macro"))
    log_loss = sk.log_loss(labels, probabilities, labels=[0, 1, 2])
    assert metrics["test/log_loss"] == pytest.approx(log_loss, rel=1e-4)
    assert metrics["test/accuracy"] > 0.8  # it learnt the three blobs


def test_a_resumed_datamodule_run_continues_the_same_trajectory(train_in_process, client):
    args = (*REGRESSION, "+data.kwargs.batch_size=16", "checkpoint.every_n_steps=4", *QUIET)
    assert train_in_process(*args, "max_epochs=4")[0] == 0
    whole = only_run(client)
    assert train_in_process(*args, "max_epochs=2")[0] == 0
    stopped = next(r for r in all_runs(client) if r.info.run_id != whole.info.run_id)
    status, out, err = train_in_process(*args, "max_epochs=4", f"resume={stopped.info.run_id}")
    assert status == 0, err
    assert "Resuming run" in out
    resumed = history(client, stopped.info.run_id)
    expected = history(client, whole.info.run_id)
    assert [step for step, _ in resumed] == [step for step, _ in expected] == list(range(16))
    assert [v for _, v in resumed] == pytest.approx([v for _, v in expected], rel=1e-6)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["data.target=nowhere.Data"], "data.target='nowhere.Data' cannot be imported (No module"),
        (["data.target=tests.user_data.Regression", "+data.kwargs.depth=3"], "unexpected keyword argument 'depth'"),
        (["data.target=tests.user_data.NotADataModule"], "does not extend lightning.pytorch.core.datamodule.LightningDataModule"),
        (["data.target=tests.user_data.Dictionaries"], "gives dict batches; expected batches of two tensors"),
        (["data.target=tests.user_data.Regression", "loss=cross_entropy"], "for a classification loss; expected int64 class indices"),
        (["data.target=tests.user_data.Regression", "data.val_split=0.2"], "expected data.val_split=0.0 with data=custom"),
        (["data.target=tests.user_data.Regression", "data._target_=tests.user_data.Flowers"], "name two classes"),
        (["data.target=tests.user_data.Regression", "engine=numpy"], "engine=numpy does not support data=custom"),
        ([], "data.target=None is not allowed: expected a LightningDataModule class path"),
    ],
    ids=["not importable", "unknown argument", "not a datamodule", "dict batches",
         "labels expected", "val_split", "two classes", "numpy engine", "no class"],
)  # fmt: skip
def test_a_bad_datamodule_is_one_line_and_no_run(train_in_process, home, args, expected):
    status, _, err = train_in_process("data=custom", "model=mlp", *args, "print_every=0")
    assert status == 2
    assert_one_error_line(status, err, expected)
    assert_nothing_running(home)
