"""The bad-input catalogue: configs, data and environment that cannot work.

Each one must end with exactly one line on stderr, `trainlab-train: error: ...` naming what was
wrong and what is allowed, a non-zero exit status, no traceback (unless HYDRA_FULL_ERROR=1), and
no MLflow run left RUNNING. Most go through the real entry point in-process (fast); a
representative set runs as real `trainlab-train` subprocesses, in parallel.

Also here: store safety (nothing written outside the store and the job's output folder, user
names cannot climb out of their folder, no environment secret reaches params or tags).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml
from hydra.errors import MissingConfigException
from mlflow.tracking import MlflowClient

from tests.helpers import TRAIN, all_runs, run_cli
from trainlab.errors import ConfigError
from trainlab.recorder.experiments import safe_folder_name
from trainlab.tracking.store_checks import check_store

FILES = {
    "empty.csv": "",
    "header.csv": "a,b\n",
    "houses.csv": "size,rooms,price\n1,2,9\n2,1,9\n3,3,16\n",
    "text.csv": "a,b\n1,2\n3,three\n",
    "nan.csv": "a,b\n1,2\nnan,4\n",
    "inf.csv": "a,b\n1,2\n3,inf\n",
    "one_row.csv": "a,b\n1,2\n",
    "labels.csv": "size,kind\n1,cat\n2,dog\n3,cat\n",
    "fake.parquet": "a,b\n1,2\n",
}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CSV = ("data=csv",)
# (id, arguments ({home} is the test's TRAINLAB_HOME), text the error line must contain)
CASES = [
    # --- config: composition
    ("unknown option", ["optimizer=foo"], "optimizer=foo: no such option; expected one of adam"),
    ("unknown preset", ["experiment=nope"], "experiment=nope: no such option; expected one of"),
    ("unknown key", ["optimizer.momentun=0.9"], "momentun"),
    ("unknown top-level key", ["+foo=1"], "foo: not a key of the config; expected one of"),
    ("wrong type", ["max_epochs=ten"], "max_epochs"),
    ("wrong type seed", ["seed=abc"], "could not be converted to Integer"),
    # --- config: values
    (
        "lr zero",
        ["optimizer.lr=0"],
        "optimizer.lr=0.0 is not allowed: expected a learning rate > 0",
    ),
    ("lr negative", ["optimizer.lr=-1"], "optimizer.lr=-1.0 is not allowed"),
    ("epochs zero", ["max_epochs=0"], "max_epochs=0 is not allowed: expected an integer > 0"),
    ("epochs negative", ["max_epochs=-3"], "max_epochs=-3 is not allowed"),
    ("steps zero", ["max_steps=0"], "max_steps=0 is not allowed: expected -1 (no limit)"),
    ("batch size zero", ["data.batch_size=0"], "data.batch_size=0 is not allowed"),
    ("val split one", ["data.val_split=1.0"], "data.val_split=1.0 is not allowed: expected 0 <="),
    ("precision", ["device.precision=8"], "device.precision='8' is not allowed: expected one of"),
    ("guard mode", ["guard.nonfinite=maybe"], "guard.nonfinite='maybe' is not allowed"),
    ("checkpoint interval", ["checkpoint.every_seconds=0"], "checkpoint.every_seconds=0.0 is not"),
    ("checkpoint steps", ["checkpoint.every_n_steps=-5"], "checkpoint.every_n_steps=-5 is not"),
    ("checkpoint top k", ["checkpoint.save_top_k=-1"], "checkpoint.save_top_k=-1 is not allowed"),
    ("checkpoint mode", ["checkpoint.mode=low"], "checkpoint.mode='low' is not allowed"),
    (
        "checkpoint monitor",
        ["checkpoint.monitor=val/loss"],
        "checkpoint.monitor='val/loss' is not a metric of this run; expected one of train/loss",
    ),
    ("resume auto untracked", ["resume=auto", "tracking=none"], "resume=auto finds the job's run"),
    ("seed data lengths", ["data.y=[1,2]"], "data.y=[1.0, 2.0] is not allowed: expected 4 values"),
    ("clip zero", ["trainer.gradient_clip_val=0"], "trainer.gradient_clip_val=0.0 is not allowed"),
    (
        "clip algorithm",
        ["trainer.gradient_clip_algorithm=max"],
        "trainer.gradient_clip_algorithm='max' is not allowed: expected one of norm, value",
    ),
    ("accumulate zero", ["trainer.accumulate_grad_batches=0"], "accumulate_grad_batches=0 is not"),
    ("validation every 0", ["trainer.check_val_every_n_epoch=0"], "check_val_every_n_epoch=0 is"),
    (
        "plateau without validation every epoch",
        ["scheduler=plateau", "data.val_split=0.25", "trainer.check_val_every_n_epoch=2"],
        "scheduler=plateau reads val/loss after every epoch",
    ),
    (
        "system metrics interval",
        ["tracking.system_metrics_every_seconds=0"],
        "tracking.system_metrics_every_seconds=0.0 is not allowed: expected a number of seconds",
    ),
    ("seed negative", ["seed=-1"], "seed=-1 is not allowed: expected an integer from 0"),
    (
        "dampening",
        ["optimizer.dampening=-1"],
        "optimizer.dampening=-1.0 is not allowed: expected 0",
    ),
    ("heartbeat zero", ["tracking.heartbeat_seconds=0"], "tracking.heartbeat_seconds=0.0 is not"),
    # --- config: numbers that are not finite (they pass `> 0` and would train on, or fail later)
    ("x_test nan", ["x_test=[nan]"], "x_test=[nan]: expected finite numbers (no nan or inf)"),
    ("lr inf", ["optimizer.lr=inf"], "optimizer.lr=inf is not allowed: expected finite numbers"),
    (
        "lr nan",
        ["optimizer.lr=nan"],
        "optimizer.lr=nan is not allowed: expected finite numbers (nan and inf are non-finite values)",
    ),
    ("eps nan", ["optimizer=adam", "optimizer.eps=nan"], "optimizer.eps=nan is not allowed"),
    ("weight decay inf", ["optimizer.weight_decay=inf"], "optimizer.weight_decay=inf is not"),
    ("huber delta inf", ["loss=huber", "loss.delta=inf"], "loss.delta=inf is not allowed"),
    ("eta_min inf", ["scheduler=cosine", "scheduler.eta_min=inf"], "scheduler.eta_min=inf is not"),
    ("noise inf", ["data=synthetic", "data.noise=inf"], "data.noise=inf is not allowed"),
    (
        "weights nan",
        ["data=synthetic", "data.n_features=2", "data.weights=[1,nan]"],
        "data.weights=[1.0, nan] is not allowed: expected finite numbers",
    ),
    ("bias inf", ["data=synthetic", "data.bias=-inf"], "data.bias=-inf is not allowed"),
    ("seed data nan", ["data.x=[1,2,nan,4]"], "data.x=[1.0, 2.0, nan, 4.0] is not allowed"),
    ("init nan", ["model.init=constant", "model.init_value=nan"], "model.init_value=nan is not"),
    ("flush inf", ["tracking.flush_every_seconds=inf"], "tracking.flush_every_seconds=inf is not"),
    (
        "path of 10,000 characters",
        ["data=csv", f"data.path=/tmp/{'a' * 10000}.csv", "data.target=y"],
        "(10009 characters)' is not allowed: expected a path the file system can open",
    ),
    (
        "path with a name of 300 characters",
        ["data=csv", f"data.path=/tmp/{'b' * 300}/rows.csv", "data.target=y"],
        "is not allowed: expected a path the file system can open (names of at most 255",
    ),
    # --- config: combinations Lightning would refuse only once the run exists
    (
        "lbfgs with a gradient scaler",
        ["optimizer=lbfgs", "device.accelerator=gpu", "device.precision=16-mixed"],
        "optimizer=lbfgs cannot train with device.precision='16-mixed'",
    ),
    # --- early stopping
    ("early stop patience", ["early_stop.patience=0"], "early_stop.patience=0 is not allowed"),
    (
        "early stop monitor",
        ["early_stop.monitor=loss", "early_stop.patience=2"],
        "one of train/loss",
    ),
    ("early stop no patience", ["early_stop.monitor=train/loss"], "needs early_stop.patience"),
    (
        "early stop no validation",
        ["early_stop.monitor=val/loss", "early_stop.patience=2"],
        "early_stop.monitor='val/loss' needs a validation split; expected data.val_split > 0",
    ),
    (
        "ols gap not mse",
        ["loss=l1", "early_stop.ols_gap=0.01"],
        "early_stop.ols_gap=0.01 needs loss=mse",
    ),
    ("ols gap negative", ["early_stop.ols_gap=-1"], "early_stop.ols_gap=-1.0 is not allowed"),
    (
        "early stop manual engine",
        ["engine=numpy", "early_stop.patience=3"],
        "engine=numpy does not support early_stop",
    ),
    # --- data
    ("missing csv", [*CSV, "data.path={home}/no.csv", "data.target=b"], "no such file"),
    ("empty csv", [*CSV, "data.path={home}/empty.csv", "data.target=b"], "the CSV file is empty"),
    ("header only", [*CSV, "data.path={home}/header.csv", "data.target=b"], "header but no rows"),
    (
        "missing target",
        [*CSV, "data.path={home}/houses.csv", "data.target=value"],
        "data.target='value' is not a column of houses.csv; columns: ['size', 'rooms', 'price']",
    ),
    (
        "missing feature",
        [*CSV, "data.path={home}/houses.csv", "data.target=price", "data.features=[age]"],
        "data.features: 'age' is not a column of houses.csv",
    ),
    (
        "non-numeric",
        [*CSV, "data.path={home}/text.csv", "data.target=a"],
        "column 'b' has non-numeric values ('three' in row 1); expected numbers",
    ),
    (
        "labels under a regression loss",
        [*CSV, "data.path={home}/labels.csv", "data.target=kind"],
        "column 'kind' has non-numeric values ('cat' in row 0); expected numbers (or, for "
        "class labels, a classification loss",
    ),
    (
        "not a parquet file",
        ["data=parquet", "data.path={home}/fake.parquet", "data.target=b"],
        "fake.parquet': not a Parquet file (Parquet magic bytes not found",
    ),
    (
        "label set under a regression loss",
        ["data=iris"],
        "data=iris holds class labels and a regression loss needs numbers; expected a "
        "classification loss",
    ),
    (
        "test split leaves no test row",
        ["data.test_split=0.1"],
        "data.test_split=0.1 leaves 4 training and 0 test rows of 4; expected at least one",
    ),
    (
        "val and test splits over one",
        ["data.val_split=0.5", "data.test_split=0.5"],
        "data.test_split=0.5 is not allowed: expected data.val_split + data.test_split < 1",
    ),
    (
        "nan",
        [*CSV, "data.path={home}/nan.csv", "data.target=b"],
        "features contain NaN or inf (first at row 1)",
    ),
    (
        "inf",
        [*CSV, "data.path={home}/inf.csv", "data.target=b"],
        "targets contain NaN or inf (first at row 1)",
    ),
    (
        "one row with validation",
        [*CSV, "data.path={home}/one_row.csv", "data.target=b", "data.val_split=0.5"],
        "leaves 1 training and 0 validation rows of 1; expected at least one of each",
    ),
    (
        "batch larger than data",
        ["data.batch_size=10"],
        "data.batch_size=10 is larger than the 4 training rows",
    ),
    ("x_test width", ["x_test=[1,2]"], "x_test=[1, 2] has 2 values per row; the data has 1"),
    ("x_test text", ["x_test=[a]"], "x_test=['a']: expected a list of numbers"),
    (
        "csv delimiter",
        [*CSV, "data.path={home}/houses.csv", "data.target=price", "data.delimiter=."],
        "data.delimiter='.' is not allowed: expected one character that is not a letter",
    ),
    # --- environment
    ("gpu without cuda", ["device=gpu"], "device=gpu: CUDA is not available"),
    ("server down", ["tracking.uri=http://127.0.0.1:{port}"], "no MLflow server answers"),
    ("store scheme", ["tracking.uri=foo://bar"], "tracking.uri='foo://bar': not a store MLflow"),
    ("store unwritable", ["tracking.uri=sqlite:////proc/x.db"], "cannot write the store /proc"),
    ("home unwritable", ["TRAINLAB_HOME=/proc/trainlab"], "TRAINLAB_HOME='/proc/trainlab'"),
    # --- resume
    ("resume unknown run", ["resume=0123456789abcdef"], "no run '0123456789abcdef' in the store"),
    ("resume missing file", ["resume={home}/gone.ckpt"], "no such checkpoint file"),
    # --- rerun
    ("rerun unknown run", ["rerun=0123456789abcdef"], "rerun=0123456789abcdef: no run '0123"),
    ("verify without a run", ["rerun.verify=true"], "rerun.verify=True is not allowed: expected"),
    (
        "rerun with a preset",
        ["rerun=0123456789abcdef", "experiment=diabetes"],
        "'experiment=diabetes' cannot be combined with a rerun",
    ),
]
# As real commands: the environment cases (tests/test_cli.py runs config and data ones).
CLI_SUBSET = {"server down", "store unwritable", "home unwritable"}


def prepare(home: Path, args: list[str]) -> tuple[list[str], dict[str, str]]:
    """Write the CSV files; split the arguments into overrides and environment variables."""
    for name, text in FILES.items():
        (home / name).write_text(text)
    port = closed_port()
    args = [a.format(home=home, port=port) for a in args]
    env = dict(a.split("=", 1) for a in args if a.startswith("TRAINLAB_HOME="))
    return [a for a in args if a not in (f"{k}={v}" for k, v in env.items())], env


def assert_one_error_line(status: int, err: str, expected: str) -> None:
    assert status != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("trainlab-train: error: "), lines[0]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err


def assert_nothing_running(home: Path) -> None:
    if (home / "mlflow.db").exists():  # most bad inputs stop before a store exists
        client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
        assert not [r for r in all_runs(client) if r.info.status == "RUNNING"]


@pytest.mark.parametrize("name,args,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_in_process(train_in_process, home, monkeypatch, name, args, expected):
    if name == "gpu without cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    overrides, env = prepare(home, args)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    status, _, err = train_in_process(*overrides, "print_every=0")
    assert_one_error_line(status, err, expected)
    assert time.monotonic() - started < 30  # fails fast: no minutes of retries
    assert_nothing_running(home)


@pytest.mark.slow
def test_bad_inputs_as_real_commands(tmp_path):
    """The subset as `trainlab-train` subprocesses, side by side; and HYDRA_FULL_ERROR=1."""
    cases = [c for c in CASES if c[0] in CLI_SUBSET]

    def one(case: tuple) -> tuple[str, str, subprocess.CompletedProcess]:
        name, args, expected = case
        home = tmp_path / name.replace(" ", "_")
        home.mkdir()
        overrides, env = prepare(home, args)
        return name, expected, run_cli(*overrides, home=home, extra_env=env)

    def with_traceback() -> subprocess.CompletedProcess:
        env = {**os.environ, "TRAINLAB_HOME": str(tmp_path), "HYDRA_FULL_ERROR": "1"}
        return subprocess.run(
            [TRAIN, "optimizer.lr=-1"], env=env, capture_output=True, text=True, timeout=180
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        traceback = pool.submit(with_traceback)
        results = list(pool.map(one, cases))
    assert len(results) == len(CLI_SUBSET)
    for name, expected, done in results:
        assert done.returncode == 2, (name, done.stderr)
        assert_one_error_line(done.returncode, done.stderr, expected)
        assert "Traceback" not in done.stdout
        assert_nothing_running(tmp_path / name.replace(" ", "_"))
    # HYDRA_FULL_ERROR=1: the same kind of error comes with its traceback.
    done = traceback.result()
    assert done.returncode != 0
    assert "Traceback (most recent call last)" in done.stderr
    assert "optimizer.lr=-1.0 is not allowed" in done.stderr


@pytest.mark.parametrize(
    ("args", "raised", "message"),
    [
        (["optimizer.lr=-1"], ConfigError, "optimizer.lr=-1.0 is not allowed"),
        (["optimizer=foo"], MissingConfigException, "optimizer/foo"),
    ],
    ids=["value", "option"],
)
def test_hydra_full_error_in_process_raises(train_in_process, args, raised, message):
    with pytest.raises(raised, match=message):
        train_in_process(*args, full_error=True)


def test_server_check_takes_seconds_not_minutes():
    started = time.monotonic()
    with pytest.raises(ConfigError, match="no MLflow server answers"):
        check_store(f"http://127.0.0.1:{closed_port()}")
    assert time.monotonic() - started < 6


# ------------------------------------------------------------------------------ store safety
@pytest.mark.parametrize(
    "name", ["../../etc", "..", "/abs/path", "a/b\\c", "", "~root", "run\x00name", ".hidden"]
)
def test_safe_folder_name_stays_inside_its_parent(tmp_path, name):
    folder = safe_folder_name(name)
    assert folder and "/" not in folder and "\\" not in folder and not folder.startswith(".")
    assert (tmp_path / folder).resolve().parent == tmp_path.resolve()


def test_run_writes_only_to_store_and_output_dir(train_in_process, home, client, monkeypatch):
    secret = "s3cr3t-token-7f3a"
    for variable in ("AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD", "TRAINLAB_API_KEY"):
        monkeypatch.setenv(variable, secret)
    cwd = home / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    status, _, err = train_in_process(
        "experiment_name=../../escape",
        "run_name=../../../run",
        "+tags.team=../up",
        "max_epochs=3",
        "print_every=0",
    )
    assert status == 0, err
    assert list(cwd.iterdir()) == []  # nothing in the folder the command ran from
    top = {p.name for p in home.iterdir()} - {"cwd"}
    # mlflow.db.lock: the lock around creating the store (kept: deleting a lock file while
    # another process waits on it would let two processes in)
    assert top == {"mlflow.db", "mlflow.db.lock", "mlartifacts", "outputs"}
    (run,) = all_runs(client)
    artifacts = Path(run.info.artifact_uri.removeprefix("file://")).resolve()
    assert artifacts.is_relative_to((home / "mlartifacts").resolve())
    assert {p.name for p in (home / "mlartifacts").iterdir()} == {safe_folder_name("../../escape")}
    values = [*run.data.params.values(), *run.data.tags.values(), *run.data.params.keys()]
    assert not [v for v in values if secret in v]
    resolved = Path(client.download_artifacts(run.info.run_id, "config/resolved.yaml", str(home)))
    assert secret not in resolved.read_text()
    assert yaml.safe_load(resolved.read_text())["experiment_name"] == "../../escape"
