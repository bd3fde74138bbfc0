"""trainlab's own store files (the embedded store and its journals, the Optuna study, run and
sweep folders) never make a run's code "dirty": the project ignores them, and the git check
leaves them out even in a checkout whose .gitignore does not list them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from trainlab.tracking import source

ROOT = Path(__file__).resolve().parents[1]
STORE_FILES = (
    "mlflow.db", "mlflow.db-journal", "mlflow.db-wal", "mlflow.db.lock", "optuna.db",
    "optuna.db-wal", "optuna.db-shm", "multirun/.sweeps/abc.lock", "mlartifacts/1/x/model.pth",
    "outputs/2026-12-05/job.log",
)  # fmt: skip


def test_the_store_files_never_make_a_checkout_dirty(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "a.py"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=repo, check=True)
    for name in STORE_FILES:  # no .gitignore lists them
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("data")
    monkeypatch.setattr(source, "checkout_root", lambda: repo)
    source.git_changes.cache_clear()
    try:
        assert source.git_changes() == (False, "")
        (repo / "b.py").write_text("y = 1\n")
        source.git_changes.cache_clear()
        dirty, diff = source.git_changes()
        assert dirty and "#   b.py" in diff
        assert "optuna" not in diff and "mlflow.db" not in diff and "multirun" not in diff
    finally:
        source.git_changes.cache_clear()  # the next caller sees this checkout again


def test_the_project_ignores_its_own_store_files():
    listed = subprocess.run(
        ["git", "check-ignore", "--no-index", *STORE_FILES],
        cwd=ROOT, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert sorted(listed) == sorted(STORE_FILES)
