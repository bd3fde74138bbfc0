"""Runs recorded before trainlab's callbacks (tests/fixtures/legacy-store, a real store that
trainlab wrote at commit 2d45e59) still resume, predict and compare with today's code.

A resumed legacy run must end with exactly the history of a run that today's code trains
uninterrupted: the checkpoint's old layout (the watcher's state under `checkpoint["trainlab"]`)
is read, and the recorded config (no `callbacks`, none of the keys added since) rebuilt."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import history, store
from trainlab.commands import compare, predict

LEGACY = Path(__file__).parent / "fixtures" / "legacy-store"
RECORDED_HOME = "/tmp/fixture/home"  # where the fixture was written (its paths are absolute)
SEED_PART = "7a588fc55081497fa7f4fdaa7a752cbe"  # experiment=seed_pipeline, stopped at step 30
MINIBATCH_PART = "049f986b0d054ccea216d4ac7a4995cd"  # 3 of 6 epochs, early_stop.patience=50
KILLED = "2d985e78f252477ba746c2c9f295183d"  # SIGINT after step 300
MINIBATCH = (
    "data=synthetic", "data.n_samples=40", "data.batch_size=8", "data.val_split=0.2",
    "optimizer=adam", "optimizer.lr=0.05", "device.precision=64", "print_every=0", "seed=3",
    "early_stop.patience=50", "tracking.system_metrics=false",
)  # fmt: skip


@pytest.fixture
def legacy(home: Path) -> Path:
    """The legacy store in this test's TRAINLAB_HOME (over the empty one that `home` puts
    there), its absolute paths moved there."""
    shutil.copy(LEGACY / "mlflow.db", home / "mlflow.db")
    shutil.copytree(LEGACY / "mlartifacts", home / "mlartifacts")
    with sqlite3.connect(home / "mlflow.db") as db:
        for table, column in (
            ("runs", "artifact_uri"),
            ("experiments", "artifact_location"),
            ("logged_models", "artifact_location"),
            ("tags", "value"),
        ):
            db.execute(
                f"UPDATE {table} SET {column} = replace({column}, ?, ?)",
                (RECORDED_HOME, str(home)),
            )
    return home


def the_run(client, experiment: str):
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


@pytest.mark.parametrize(
    ("run_id", "more", "fresh", "keys"),
    [
        (SEED_PART, ("max_steps=-1",), ("experiment=seed_pipeline", "print_every=0",
         "tracking.system_metrics=false"), ("train/loss", "weight/0_0", "bias/0")),
        (MINIBATCH_PART, ("max_epochs=6",), (*MINIBATCH, "max_epochs=6"),
         ("train/loss", "weight/0_0", "val/loss")),
    ],
    ids=["full_batch", "mini_batch_early_stop"],
)  # fmt: skip
def test_a_legacy_run_resumes_to_the_history_of_an_uninterrupted_run(
    legacy, train_in_process, run_id, more, fresh, keys
):
    client = store(legacy)
    status, out, err = train_in_process(f"resume={run_id}", *more)
    assert status == 0, err
    assert f"Resuming run {run_id} at step" in out
    assert train_in_process(*fresh, "experiment_name=today")[0] == 0
    resumed, today = client.get_run(run_id), the_run(client, "today")
    assert resumed.info.status == "FINISHED"
    # The fixture's steps were computed on the CPU that wrote it: another CPU's vector units may
    # round a float64 sum one unit in the last place differently, never more.
    for key in keys:
        ours, theirs = history(client, run_id, key), history(client, today.info.run_id, key)
        assert [step for step, _ in ours] == [step for step, _ in theirs], key
        assert [v for _, v in ours] == pytest.approx([v for _, v in theirs], rel=1e-12), key
    final = today.data.metrics["final/train_loss"]
    assert resumed.data.metrics["final/train_loss"] == pytest.approx(final, rel=1e-12)
    for tag in ("trainlab.early_stop.best_epoch", "trainlab.early_stop.best"):
        assert resumed.data.tags.get(tag) == today.data.tags.get(tag)


def test_resume_auto_finds_a_legacy_run_of_the_same_job(legacy, train_in_process):
    # The killed run's own command (its job key is what resume=auto looks for), to step 400.
    status, out, err = train_in_process(
        "max_epochs=1000000", "print_every=100", "experiment_name=legacy",
        "checkpoint.every_n_steps=100", "tracking.system_metrics=false", "tracking.plots=false",
        "resume=auto", "max_steps=400",
    )  # fmt: skip
    assert status == 0, err
    assert f"Resuming run {KILLED} at step 301" in out
    client = store(legacy)
    assert client.get_run(KILLED).info.status == "FINISHED"
    assert [s for s, _ in history(client, KILLED)] == list(range(400))


def test_a_legacy_model_predicts_and_legacy_runs_compare(legacy, capsys):
    """A legacy model is pickled: refused in one line, it loads with --trust-pickle."""
    client = store(legacy)
    uri = client.tracking_uri
    with pytest.raises(SystemExit):
        predict.main([SEED_PART, "5", "--tracking-uri", uri])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--trust-pickle" in err, err
    predict.main([SEED_PART, "5", "--tracking-uri", uri, "--trust-pickle"])
    printed = float(capsys.readouterr().out.strip())
    assert printed == pytest.approx(client.get_run(SEED_PART).data.metrics["pred/after"], rel=1e-6)
    compare.main([SEED_PART, MINIBATCH_PART, "--json", "--tracking-uri", uri])
    report = capsys.readouterr().out
    assert SEED_PART in report and MINIBATCH_PART in report and '"data.name"' in report
