"""Shared fixtures: a private TRAINLAB_HOME (store, artifacts, outputs) per test, real Hydra
composition of the project's configs, and the real entry point in-process."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from tests.helpers import model_folder
from trainlab import cli
from trainlab.config.schema import register_configs
from trainlab.paths import CONFIG_DIR


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables made once (creating them takes seconds)."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TRAINLAB_HOME with no store yet: the first job creates mlflow.db itself."""
    monkeypatch.setenv("TRAINLAB_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def home(fresh_home: Path, empty_store: Path) -> Path:
    """A private TRAINLAB_HOME whose mlflow.db starts as a copy of an empty store."""
    shutil.copy(empty_store, fresh_home / "mlflow.db")
    return fresh_home


@pytest.fixture
def client(home: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")


@pytest.fixture
def composed() -> Iterator:
    """compose(overrides) -> the DictConfig Hydra builds from conf/ for those overrides."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):

        def _compose(*overrides: str) -> DictConfig:
            return compose(
                config_name="train", overrides=list(overrides), return_hydra_config=False
            )

        yield _compose


@pytest.fixture
def train_in_process(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """train(*args) -> (exit status, stdout, stderr): `trainlab-train ARGS` through its real
    entry point (Hydra's CLI, error lines, exit codes) inside the test process, ~1 s faster
    than a subprocess."""

    def _train(*args: str, full_error: bool = False) -> tuple[int, str, str]:
        # main() sets HYDRA_FULL_ERROR for Hydra; each call starts from the user's value.
        if full_error:
            monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
        else:
            monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
        monkeypatch.setattr(sys, "argv", ["trainlab-train", *args])
        capsys.readouterr()
        status = cli.main()
        out, err = capsys.readouterr()
        return status, out, err

    return _train


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory) -> Iterator[tuple[Path, str, str]]:
    """One real dashboard (`python -m trainlab.commands.dashboard`, as `make ui` runs it) for the
    session: (its TRAINLAB_HOME, its URL, what it printed)."""
    from tests.dashboard_server import running_dashboard

    home = tmp_path_factory.mktemp("ui-home")
    with running_dashboard(home) as (url, printed):
        yield home, url, printed


@pytest.fixture(scope="session")
def team(tmp_path_factory) -> Iterator:
    """The team service as `make team` runs it (PostgreSQL, SeaweedFS, MLflow with basic-auth)
    for the session, with `alice` (EDIT on team_runs, team_load, team_restart, team_slurm) and `reader` (READ on team_runs)."""
    from tests.team_service import team_service

    with team_service(tmp_path_factory.mktemp("team")) as service:
        service.add_user(
            "alice",
            *[("EDIT", e) for e in ("team_runs", "team_load", "team_restart", "team_slurm")],
        )
        service.add_user("reader", ("READ", "team_runs"))
        yield service


@pytest.fixture
def artifacts(trained, tmp_path) -> Iterator:
    """plant(kind) -> the model folder of the requesting module's `trained` run of that kind,
    put back as it was after the test."""
    home, runs = trained
    saved: list[tuple[Path, Path]] = []

    def plant(kind: str) -> Path:
        folder = model_folder(home, runs[kind])
        backup = tmp_path / f"backup-{kind}"
        shutil.copytree(folder, backup)
        saved.append((folder, backup))
        return folder

    yield plant
    for folder, backup in saved:
        shutil.rmtree(folder)
        shutil.copytree(backup, folder)


# The files that take minutes (a team service, a sweep killed and continued, outages): run first.
# pytest-xdist hands whole files (`--dist loadfile`) to the workers in collection order; when the
# longest come last, the run ends with one worker busy and the other idle.
LONGEST_FIRST = (
    "test_outages.py", "test_team.py", "test_server.py", "test_search_continued.py",
    "test_private_experiments.py", "test_sweep_resume.py", "test_sweep_faults.py",
    "test_preemption.py", "test_sweep_slots.py", "test_store.py", "test_install.py", "test_any_model.py",
    "test_model_safety.py", "test_ddp.py", "test_interrupt_resume.py", "test_recorder_faults.py",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's own order is kept
