"""`trainlab-predict`: a logged model alone reproduces the run's prediction; bad input is one line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from tests.helpers import all_runs, free_port, run_composed
from trainlab.commands.predict import main
from trainlab.config.schema import register_configs
from trainlab.paths import CONFIG_DIR

PREDICT = str(Path(sys.executable).with_name("trainlab-predict"))


@pytest.fixture(scope="module")
def seed_store(tmp_path_factory):
    """One seed pipeline run for the module, its model also registered as `seed` @ `current`."""
    home = tmp_path_factory.mktemp("predict-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRAINLAB_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        register_configs()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            overrides = ["experiment=seed_pipeline", "print_every=0", "tracking.register=seed"]
            run_composed(compose(config_name="train", overrides=overrides))
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    (run,) = all_runs(client)
    return home, client, run


@pytest.fixture
def seed_run(seed_store, monkeypatch):
    """The seed run, with TRAINLAB_HOME pointing at its store (trainlab-predict's default)."""
    home, _, run = seed_store
    monkeypatch.setenv("TRAINLAB_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return run


def predicted(capsys, *args: str) -> list[list[float]]:
    main(list(args))
    return [[float(v) for v in line.split()] for line in capsys.readouterr().out.splitlines()]


@pytest.mark.slow
def test_console_script_reproduces_pred_after_from_the_model_alone(seed_run, seed_store):
    home = seed_store[0]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["TRAINLAB_HOME"] = str(home)
    done = subprocess.run(
        [PREDICT, seed_run.info.run_id, "5"], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(seed_run.data.metrics["pred/after"], rel=1e-6)
    assert 9 < float(done.stdout) < 11  # "about 10"


def test_run_uri_registered_alias_and_several_rows(seed_run, seed_store, capsys):
    client = seed_store[1]
    after = seed_run.data.metrics["pred/after"]
    run_uri = f"runs:/{seed_run.info.run_id}/model"
    assert predicted(capsys, run_uri, "5") == [[pytest.approx(after, rel=1e-6)]]
    version = client.get_model_version_by_alias("seed", "current")
    assert version.run_id == seed_run.info.run_id
    rows = predicted(capsys, "models:/seed@current", "--row", "5", "--row=-1", "--row", "0")
    weight = rows[0][0] - rows[2][0]  # f(5) - f(0) = 5 w
    assert rows[0][0] == pytest.approx(after, rel=1e-6)
    assert rows[1][0] == pytest.approx(rows[2][0] - weight / 5, rel=1e-5)


@pytest.mark.parametrize("callers", ["its own store", "none"])
def test_a_prediction_leaves_the_callers_mlflow_store_as_it_was(
    seed_run, seed_store, tmp_path, capsys, callers
):
    """predict points MLflow at the run's store for its one call: a notebook that uses another
    store (or MLflow's default) goes on with it, in MLflow and in MLFLOW_TRACKING_URI."""
    mine = f"sqlite:///{tmp_path / 'mine.db'}" if callers != "none" else None
    mlflow.set_tracking_uri(mine)
    default = mlflow.get_tracking_uri()
    try:
        runs = f"sqlite:///{seed_store[0] / 'mlflow.db'}"
        assert predicted(capsys, seed_run.info.run_id, "5", "--tracking-uri", runs)
        assert mlflow.get_tracking_uri() == default != runs
        assert os.environ.get("MLFLOW_TRACKING_URI") == mine
    finally:
        mlflow.set_tracking_uri(None)


def test_csv_in_and_out(seed_run, tmp_path, capsys):
    source = tmp_path / "in.csv"
    source.write_text("y,x\n0,5\n0,1\n")  # matched by the model's feature name, not position
    assert predicted(capsys, seed_run.info.run_id, "--csv", str(source)) == [
        [pytest.approx(seed_run.data.metrics["pred/after"], rel=1e-6)],
        [pytest.approx(predicted(capsys, seed_run.info.run_id, "1")[0][0])],
    ]
    target = tmp_path / "out.csv"
    main([seed_run.info.run_id, "--csv", str(source), "--out", str(target)])
    rows = list(csv.DictReader(target.open()))
    assert [float(r["x"]) for r in rows] == [5.0, 1.0]
    assert float(rows[0]["predicted_y"]) == pytest.approx(seed_run.data.metrics["pred/after"])


def test_standardized_inputs_are_part_of_the_model(home, client, composed, capsys):
    run_composed(
        composed(
            "data=seed",
            "data.x=[10,20,30,40]",  # mean 25, std 11.2: far from the identity
            "data.y=[1,3,5,7]",
            "data.standardize=true",
            "data.x_test=[50]",
            "optimizer.lr=0.1",
            "max_epochs=100",
            "print_every=0",
        )
    )
    (run,) = all_runs(client)
    capsys.readouterr()  # the training job's own lines
    # y = 0.2 x - 1: f(50) = 9 when the network sees (50 - 25) / 11.2, not 50.
    assert run.data.metrics["pred/after"] == pytest.approx(9, abs=0.2)
    raw = predicted(capsys, run.info.run_id, "50")
    assert raw == [[pytest.approx(run.data.metrics["pred/after"], rel=1e-5)]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{run}", "5", "6"], "got 2 value(s) per row; the model takes 1 feature(s) (x)"),
        (["{run}", "five"], "'five' is not a number"),
        (["{run}", "--row", "1,x"], "'x' is not a number"),
        (["{run}", "nan"], "'nan' is not a finite number"),
        (["0123456789abcdef0123456789abcdef", "5"], "no run 0123456789abcdef0123456789abcdef"),
        (["not-a-run", "5"], "neither a run id"),
        (["{run}"], "no inputs"),
        (["{run}", "--csv", "/no/such.csv"], "no such file"),
        (["{run}", "--row", "1", "--row", "1,2"], "rows of different lengths"),
    ],
)
def test_bad_input_is_one_line_and_a_failure(seed_run, capsys, args, message):
    with pytest.raises(SystemExit) as stop:
        main([a.format(run=seed_run.info.run_id) for a in args])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("trainlab-predict: error: ") and err.count("\n") == 1, err
    assert message in err


@pytest.mark.slow
def test_the_logged_model_loads_where_trainlab_is_not_installed(seed_run, seed_store):
    """Pickled with its classes by value (tracking.model_format=pickle): torch and MLflow
    suffice to load and call it."""
    home = seed_store[0]
    probe = (
        "import sys; sys.modules['trainlab'] = None\n"  # importing trainlab now fails
        "import mlflow, torch\n"
        f"mlflow.set_tracking_uri('sqlite:///{home / 'mlflow.db'}')\n"
        f"model = mlflow.pytorch.load_model('runs:/{seed_run.info.run_id}/model')\n"
        "print(model(torch.tensor([[5.0]])).item())\n"
    )
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(seed_run.data.metrics["pred/after"], rel=1e-6)


def served(home: Path, client: MlflowClient, model: str, inputs: list[list[float]]) -> list:
    """MLflow's own scoring server over a logged model (local env manager: this venv, no conda),
    as a real process: its answer to `inputs` in MLflow's JSON."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # `mlflow models serve` execs `uvicorn` by name: the venv's bin must be on PATH, as it is
    # in an activated venv.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = client.tracking_uri
    command = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", model,
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    log = (home / f"serve-{port}.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (home / f"serve-{port}.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the scoring server did not start in 120 s"
            time.sleep(0.25)
        request = urllib.request.Request(
            f"{url}/invocations",
            data=json.dumps({"inputs": inputs}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the uvicorn it started
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_mlflow_models_serve_answers_what_the_run_predicted(seed_run, seed_store, capsys):
    """x = 5 in MLflow's JSON gives pred/after and trainlab-predict's answer."""
    home, client, _ = seed_store
    answer = served(home, client, f"runs:/{seed_run.info.run_id}/model", [[5.0]])
    after = seed_run.data.metrics["pred/after"]
    assert answer == [[pytest.approx(after, rel=1e-6)]]
    assert predicted(capsys, seed_run.info.run_id, "5") == [[pytest.approx(answer[0][0], rel=1e-6)]]


@pytest.mark.slow
def test_a_served_classifier_answers_its_labels_and_probabilities(tmp_path, monkeypatch, capsys):
    """iris: MLflow's scoring server and trainlab-predict give the same label and probabilities,
    in the run's class names."""
    monkeypatch.setenv("TRAINLAB_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        overrides = ["experiment=iris_softmax", "max_epochs=60", "print_every=0"]
        run_composed(compose(config_name="train", overrides=overrides))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = all_runs(client)
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    answer = served(tmp_path, client, f"runs:/{run.info.run_id}/model", rows)
    assert [a["label"] for a in answer] == ["setosa", "virginica"]
    names = ["setosa", "versicolor", "virginica"]
    for row in answer:
        assert set(row) == {"label", *(f"probability_{n}" for n in names)}
        assert sum(row[f"probability_{n}"] for n in names) == pytest.approx(1, abs=1e-5)
    capsys.readouterr()  # what the training printed
    main([run.info.run_id, "--row", "5.1,3.5,1.4,0.2", "--row", "6.7,3,5.2,2.3"])
    lines = capsys.readouterr().out.splitlines()
    for line, row in zip(lines, answer, strict=True):
        label, *probabilities = line.split()
        assert label == row["label"]
        printed = dict(p.split("=") for p in probabilities)
        for n in names:
            assert float(printed[n]) == pytest.approx(row[f"probability_{n}"], rel=1e-2, abs=1e-6)


def test_store_and_csv_inputs_are_checked(seed_run, seed_store, tmp_path, monkeypatch, capsys):
    home, _, _ = seed_store
    rows = tmp_path / "rows.csv"
    rows.write_text("x\n1\n\n2\nnan\n")
    for args, message in (
        (["--csv", str(rows)], "row 2 has an empty, NaN or inf value"),
        (["5", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"], "no store at"),
    ):
        with pytest.raises(SystemExit):
            main([seed_run.info.run_id, *args])
        err = capsys.readouterr().err
        assert err.startswith("trainlab-predict: error: ") and err.count("\n") == 1, err
        assert message in err
    monkeypatch.chdir(home)  # a store named relative to the current folder
    assert predicted(capsys, seed_run.info.run_id, "5", "--tracking-uri", "sqlite:///mlflow.db")
