"""End to end: `trainlab-train` subprocesses against a temporary SQLite store, read back with
MLflow's client."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from tests.helpers import all_runs, run_cli

pytestmark = pytest.mark.slow  # end to end: real subprocesses and servers


def the_run(client):
    runs = all_runs(client)
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def test_seed_pipeline_end_to_end(home, client):
    done = run_cli("experiment=seed_pipeline", home=home)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert (
        "Prediction before training: f(5) =" in out and "Prediction after training: f(5) =" in out
    )
    assert "epoch 0, w = " in out and "epoch 99, w = " in out  # the note prints every epoch
    run = the_run(client)
    assert run.info.run_id in out and "make ui" in out
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer.lr"] == "0.01"
    assert run.data.params["optimizer._target_"] == "torch.optim.SGD"
    assert run.data.params["max_epochs"] == "100"
    assert run.data.tags["trainlab.preset"] == "seed_pipeline"
    assert run.data.tags["trainlab.device"] == "cpu"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == list(range(100))  # one point per optimizer step
    assert history[-1].value < history[0].value
    for key in ("weight/0_0", "bias/0"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == list(range(100))
    assert {"pred/before", "pred/after", "final/train_loss"} <= set(run.data.metrics)
    after = run.data.metrics["pred/after"]
    assert f"f(5) = {after: .3f}" in out
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "config")}
    assert artifacts == {"config/resolved.yaml", "config/overrides.yaml"}
    resolved = yaml.safe_load(
        Path(client.download_artifacts(run.info.run_id, "config/resolved.yaml")).read_text()
    )
    assert resolved["optimizer"]["lr"] == 0.01 and resolved["data"]["x"] == [1.0, 2.0, 3.0, 4.0]
    overrides = yaml.safe_load(
        Path(client.download_artifacts(run.info.run_id, "config/overrides.yaml")).read_text()
    )
    assert overrides == {"overrides": ["experiment=seed_pipeline"]}
    # Store and artifacts stay under TRAINLAB_HOME, whatever the current folder.
    assert run.info.artifact_uri.startswith((home / "mlartifacts").as_uri())
    assert (home / "outputs").is_dir()


def test_seed_from_zero_weights_converges_and_repeats(home, client):
    args = (
        "model.init=zeros",
        "optimizer.lr=0.03",
        "max_epochs=500",
        "print_every=0",
        "device.precision=64",
    )
    first, second = run_cli(*args, home=home), run_cli(*args, home=home)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    runs = all_runs(client)
    assert len(runs) == 2
    for run in runs:
        assert run.data.metrics["pred/before"] == 0.0  # w = b = 0, as in the seed
        assert abs(run.data.metrics["pred/after"] - 10.0) < 0.05
    histories = [
        [m.value for m in client.get_metric_history(r.info.run_id, "train/loss")] for r in runs
    ]
    assert histories[0] == histories[1]  # same config, same seed: identical metrics


def test_csv_data_from_a_relative_path(home, client, tmp_path):
    rows = [
        {"size": s, "rooms": r, "price": 3 * s + 2 * r + 1}
        for s, r in [(1, 2), (2, 1), (3, 3), (4, 2), (5, 4), (6, 1)]
    ]
    with open(tmp_path / "houses.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["size", "rooms", "price"])
        writer.writeheader()
        writer.writerows(rows)
    done = run_cli(
        "data=csv",
        "data.path=houses.csv",
        "data.target=price",
        "x_test=[7,3]",
        "optimizer=adam",
        "optimizer.lr=0.1",
        "max_epochs=300",
        "print_every=0",
        home=home,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    run = the_run(client)
    assert run.data.params["data.path"] == "houses.csv"
    assert {"weight/0_0", "weight/0_1", "bias/0"} <= set(run.data.metrics)
    assert abs(run.data.metrics["pred/after"] - (3 * 7 + 2 * 3 + 1)) < 1.0


def test_diabetes_with_validation(home, client):
    done = run_cli("experiment=diabetes", home=home)
    assert done.returncode == 0, done.stderr
    run = the_run(client)
    assert run.info.status == "FINISHED"
    assert run.data.params["data.name"] == "diabetes"
    val = client.get_metric_history(run.info.run_id, "val/loss")
    assert len(val) == 20  # one point per epoch
    assert run.data.metrics["final/train_loss"] < 3000  # least squares on 80% of the rows: ~2.8e3


@pytest.mark.parametrize(
    "args,expected",
    [
        (
            ["optimizer=foo"],
            "optimizer=foo: no such option; expected one of adam, adamw, lbfgs, rmsprop, sgd",
        ),
        (["optimizer.momentun=0.9"], "momentun"),
        (["max_epochs=ten"], "max_epochs"),
        (["optimizer.lr=-1"], "optimizer.lr=-1.0 is not allowed: expected a learning rate > 0"),
        (["max_epochs=0"], "max_epochs=0 is not allowed"),
        (
            ["data=csv", "data.path=missing.csv", "data.target=y"],
            "data.path='missing.csv': no such file",
        ),
        (
            ["data=csv", "data.path=bad.csv", "data.target=price"],
            "data.target='price' is not a column of bad.csv",
        ),
        (["device=gpu"], "device=gpu: CUDA is not available"),
        (["x_test=[1,2]"], "x_test=[1, 2] has 2 values per row; the data has 1 features"),
    ],
)
def test_bad_input_one_line_no_run(home, client, args, expected):
    (home / "bad.csv").write_text("a,b\n1,2\n3,4\n")
    done = run_cli(*args, home=home)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("trainlab-train: error: ") and expected in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert not [r for r in all_runs(client) if r.info.status == "RUNNING"]


def test_the_console_shows_the_run_not_the_libraries(fresh_home):
    """A multirun on a brand-new store: the seed's lines, the run ids and the summary; none of
    Lightning's banners, MLflow's table creation or Hydra's decorations."""
    done = run_cli("-m", "seed=0,1", "max_epochs=3", home=fresh_home)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    for noise in ("GPU available", "Tip", "Creating initial MLflow", "[HYDRA]", "INFO"):
        assert noise not in done.stdout, noise
    assert done.stdout.count("\nMLflow run ") == 2 and "Sweep summary (2 of 2" in done.stdout


def test_long_runs_print_a_few_lines_off_a_terminal(home):
    done = run_cli("max_epochs=2000", "tracking=none", home=home)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("epoch ")]
    assert 15 <= len(lines) <= 21 and lines[0].startswith("epoch 0,")  # not 200 lines
