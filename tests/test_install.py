"""trainlab as a wheel in a fresh venv, run from a folder that is not the checkout: the configs
ship inside the package, the store goes to the documented default, a user's own config folder
adds presets and options, and the commands work: a run, a sweep, a prediction, a resume."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import all_runs

ROOT = Path(__file__).resolve().parents[1]
USER_PRESET = """\
# @package _global_
defaults:
  - override /optimizer: fast_sgd
max_epochs: 4
experiment_name: mine
"""
USER_OPTION = """\
defaults:
  - /schema_optimizer_sgd@_here_
lr: 0.05
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with trainlab installed from its wheel; its other packages come from this
    environment through a path line (whose .pth files, the editable trainlab's among them, a
    path line does not read)."""
    tmp = tmp_path_factory.mktemp("install")
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(tmp / "wheels"), str(ROOT)], check=True)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (wheel,) = (tmp / "wheels").glob("trainlab-*.whl")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run([*pip, str(wheel)], check=True)
    return venv


def command(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINLAB_", "MLFLOW_"))}
    env["HOME"] = str(cwd / "home")  # the default store: ~/.local/share/trainlab
    env.pop("XDG_DATA_HOME", None)
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_the_wheel_runs_anywhere(installed, tmp_path):
    where = tmp_path / "anywhere"
    where.mkdir()
    imported = command(
        installed, where, "python", "-c", "import trainlab; print(trainlab.__file__)"
    )
    assert str(installed) in imported.stdout  # the wheel's package, not the checkout's

    helped = command(installed, where, "trainlab-train", "--help")
    assert helped.returncode == 0, helped.stderr
    data = "data: breast_cancer, csv, custom, diabetes, digits, images, iris, parquet, seed, synthetic, wine"
    assert data in helped.stdout
    assert "model: cnn, custom, linear, mlp" in helped.stdout
    assert "schema" not in helped.stdout

    done = command(installed, where, "trainlab-train", "max_epochs=5", "print_every=0")
    assert done.returncode == 0, done.stderr
    store = where / "home" / ".local" / "share" / "trainlab" / "mlflow.db"
    client = MlflowClient(f"sqlite:///{store}")
    (run,) = all_runs(client)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith(store.parent.as_uri())

    predicted = command(installed, where, "trainlab-predict", run.info.run_id, "5")
    assert predicted.returncode == 0, predicted.stderr
    assert float(predicted.stdout) == pytest.approx(run.data.metrics["pred/after"], rel=1e-6)

    sweep = command(installed, where, "trainlab-train", "-m", "seed=0,1", "max_epochs=3")
    assert sweep.returncode == 0, sweep.stderr
    assert len(all_runs(client)) == 1 + 3  # the run, the parent and its two children


@pytest.mark.slow
def test_a_user_config_folder_adds_presets_and_options(installed, tmp_path):
    where = tmp_path / "project"
    (where / "myconf" / "experiment").mkdir(parents=True)
    (where / "myconf" / "optimizer").mkdir()
    (where / "myconf" / "experiment" / "mine.yaml").write_text(USER_PRESET)
    (where / "myconf" / "optimizer" / "fast_sgd.yaml").write_text(USER_OPTION)
    helped = command(installed, where, "trainlab-train", "--config-dir", "myconf", "--help")
    assert "fast_sgd" in helped.stdout and "mine" in helped.stdout
    done = command(
        installed, where, "trainlab-train", "--config-dir", "myconf", "experiment=mine",
        "print_every=0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    store = where / "home" / ".local" / "share" / "trainlab" / "mlflow.db"
    client = MlflowClient(f"sqlite:///{store}")
    (run,) = all_runs(client)
    assert run.data.params["optimizer.lr"] == "0.05" and run.data.params["max_epochs"] == "4"
    # The run resumes from its own record, without the user's folder.
    resumed = command(
        installed, where, "trainlab-train", f"resume={run.info.run_id}", "max_epochs=6"
    )
    assert resumed.returncode == 0, resumed.stderr
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert steps == list(range(6))
