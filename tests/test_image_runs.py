"""Images end to end through the real command: a folder of PNG and JPEG images made here is
trained on with `model=cnn`, recorded as a classifier (val/*, test/*, the confusion matrix), and
`trainlab-predict RUN --image FILE` answers each file's class with its probabilities; the bad
folders and files are one line, exit 2 and no run; `experiment=digits_cnn` learns."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from tests.helpers import PREDICT, all_runs
from tests.test_bad_inputs import assert_nothing_running, assert_one_error_line
from trainlab.data.images import load_image

QUIET = ("print_every=0", "tracking.system_metrics=false")
COLOURS = {"blue": (20, 40, 220), "red": (220, 30, 20)}


def colour_folder(root: Path, per_class: int = 12) -> Path:
    """Two classes of noisy squares of one colour each, of several sizes, PNG and JPEG."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            side = 6 + i % 5
            pixels = np.clip(rng.normal(colour, 25, size=(side, side, 3)), 0, 255)
            image = Image.fromarray(pixels.astype(np.uint8))
            image.save(root / name / f"{i:02d}.{'png' if i % 2 else 'jpg'}")
    return root


def predict_images(home: Path, run_id: str, *files: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["TRAINLAB_HOME"] = str(home)
    args = [arg for f in files for arg in ("--image", str(f))]
    return subprocess.run(
        [PREDICT, run_id, *args], env=env, capture_output=True, text=True, timeout=180
    )


@pytest.mark.slow
def test_an_image_folder_trains_a_cnn_and_predict_answers_each_file(
    train_in_process, client, home, tmp_path
):
    folder = colour_folder(tmp_path / "photos")
    status, out, err = train_in_process(
        "data=images", f"data.path={folder}", "data.image_size=8", "data.val_split=0.25",
        "data.batch_size=8", "model=cnn", "model.channels=[8]", "loss=cross_entropy",
        "optimizer=adam", "optimizer.lr=0.05", "max_epochs=15", *QUIET,
    )  # fmt: skip
    assert status == 0, err
    (run,) = all_runs(client)
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["val/accuracy"] == 1.0  # red against blue
    assert "plots/confusion_matrix.png" in {
        a.path for a in client.list_artifacts(run.info.run_id, "plots")
    }
    assert f"trainlab-predict {run.info.run_id} --image FILE" in out
    (dataset,) = {i.dataset.source for i in run.inputs.dataset_inputs}
    assert str(folder) in dataset

    new_red, new_blue = tmp_path / "new_red.png", tmp_path / "new_blue.jpg"
    Image.new("RGB", (30, 20), COLOURS["red"]).save(new_red)
    Image.new("RGB", (9, 9), COLOURS["blue"]).save(new_blue)
    done = predict_images(home, run.info.run_id, new_red, new_blue)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(f"{new_red}  red  blue=") and "red=" in lines[0]
    assert lines[1].startswith(f"{new_blue}  blue  blue=")

    # The logged model takes a batch of image tensors as MLflow serves it.
    batch = np.stack([load_image(f, 8, 3).numpy() for f in (new_red, new_blue)])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        answers = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(batch)
    assert list(answers["label"]) == ["red", "blue"]

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    refused = predict_images(home, run.info.run_id, text)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "is not an image Pillow can read" in refused.stderr


def test_predict_refuses_images_for_a_model_of_rows(train_in_process, client, home, tmp_path):
    assert train_in_process("max_epochs=2", *QUIET)[0] == 0
    (run,) = all_runs(client)
    picture = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(picture)
    refused = predict_images(home, run.info.run_id, picture)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "expected a model trained on images" in refused.stderr


def one_class_folder(root: Path) -> Path:
    colour_folder(root)
    for file in (root / "blue").iterdir():
        file.unlink()
    (root / "blue").rmdir()
    return root


def with_text_file(root: Path) -> Path:
    colour_folder(root)
    (root / "red" / "broken.png").write_text("not an image")
    return root


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (one_class_folder, "expected at least two classes"),
        (with_text_file, "broken.png is not an image Pillow can read"),
        (lambda root: (root.mkdir(), root)[1], "the folder holds no class folders"),
    ],
    ids=["one class", "not an image", "empty folder"],
)
def test_a_bad_image_folder_is_one_line_and_no_run(
    train_in_process, home, tmp_path, make, expected
):
    folder = make(tmp_path / "photos")
    status, _, err = train_in_process(
        "data=images", f"data.path={folder}", "model=cnn", "loss=cross_entropy", *QUIET
    )
    assert_one_error_line(status, err, expected)
    assert_nothing_running(home)
    if (home / "mlflow.db").exists():
        assert not all_runs(mlflow.tracking.MlflowClient(f"sqlite:///{home / 'mlflow.db'}"))


@pytest.mark.slow
def test_the_digits_preset_learns_the_digits(train_in_process, client):
    status, _, err = train_in_process("experiment=digits_cnn", *QUIET)
    assert status == 0, err
    (run,) = all_runs(client)
    metrics = client.get_run(run.info.run_id).data.metrics
    assert metrics["test/accuracy"] > 0.9 and metrics["val/accuracy"] > 0.9
