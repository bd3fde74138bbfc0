"""What a run says when something is wrong: one line in the user's terms, no wrong line before it,
and every printed resume command one that works (real runs, real store, real processes)."""

from __future__ import annotations

import pickle
import shutil
import signal
from pathlib import Path

import pytest

from tests.helpers import all_runs, run_cli, start_cli, store, until

LONG = (
    "experiment=seed_pipeline", "print_every=0", "max_epochs=1000000", "tracking.plots=false",
    "tracking.log_model=false", "checkpoint.every_n_steps=200",
)  # fmt: skip


def checkpointed_run(home: Path) -> str | None:
    """The id of a run of the store that has a checkpoint artifact already."""
    for run in all_runs(store(home)) if (home / "mlflow.db").exists() else []:
        names = [f.path for f in store(home).list_artifacts(run.info.run_id, "checkpoints")]
        if "checkpoints/last.ckpt" in names:
            return run.info.run_id
    return None


@pytest.mark.slow
def test_refusing_to_resume_a_live_run_prints_only_the_refusal(home):
    live = start_cli(home, *LONG)
    try:
        run_id = until("a checkpoint of the live run", lambda: checkpointed_run(home))
        done = run_cli(f"resume={run_id}", home=home)
    finally:
        live.send_signal(signal.SIGINT)
        live.communicate(timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "still RUNNING" in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "not opened yet" not in done.stdout + done.stderr
    assert "Resume with" not in done.stdout and "keeps its checkpoint" not in done.stdout


def test_a_param_longer_than_mlflow_keeps_is_said_and_kept_whole(train_in_process, client):
    note = "n" * 7000
    status, out, err = train_in_process(
        "experiment=seed_pipeline", "print_every=0", "tracking.plots=false",
        "tracking.log_model=false", f"+tags.note={note}",
    )  # fmt: skip
    assert status == 0, err
    (line,) = [x for x in out.splitlines() if "tags.note" in x]
    assert line.startswith("trainlab-train: note: tags.note is 7000 characters"), line
    assert "config/resolved.yaml" in line
    (run,) = all_runs(client)
    assert len(run.data.params["tags.note"]) == 6000
    resolved = client.download_artifacts(run.info.run_id, "config/resolved.yaml")
    assert note in Path(resolved).read_text()


def test_resuming_from_a_plain_pickle_is_one_line_without_torchs_warning(home, tmp_path):
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"global_step": 3}, protocol=4))
    done = run_cli(f"resume={plain}", home=home)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Warning" not in done.stderr, done.stderr
    assert "not a checkpoint trainlab-train wrote" in done.stderr


@pytest.mark.slow
def test_both_checkpoint_copies_unreadable_says_why_the_local_one_cannot_be_read(home):
    live = start_cli(home, *LONG)
    run_id = until("a checkpoint of the run", lambda: checkpointed_run(home))
    live.send_signal(signal.SIGINT)
    out, _ = live.communicate(timeout=120)
    local = Path(next(x for x in out.split() if x.endswith("last.ckpt")))
    assert local.is_file(), out
    local.write_bytes(b"torn")
    (artifact,) = home.glob(f"mlartifacts/*/{run_id}/artifacts/checkpoints/last.ckpt")
    artifact.write_bytes(b"torn too")
    done = run_cli(f"resume={run_id}", home=home)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "is missing too" not in done.stderr
    assert f"the job folder's {local} cannot be read either" in done.stderr, done.stderr


def started_run(home: Path) -> str | None:
    """The id of a run whose start files are written already."""
    for run in all_runs(store(home)) if (home / "mlflow.db").exists() else []:
        names = [f.path for f in store(home).list_artifacts(run.info.run_id, "config")]
        if "config/resolved.yaml" in names:
            return run.info.run_id
    return None


@pytest.mark.slow
def test_an_artifact_folder_removed_mid_run_never_ends_finished_with_files_missing(home):
    job = start_cli(home, *LONG[:2], "max_epochs=6000", "tracking.plots=false")
    run_id = until("the run's start files", lambda: started_run(home))
    (folder,) = home.glob(f"mlartifacts/*/{run_id}/artifacts")
    shutil.rmtree(folder)
    out, err = job.communicate(timeout=300)
    run = store(home).get_run(run_id)
    names = {f.path for f in store(home).list_artifacts(run_id, "config")}
    names |= {f.path for f in store(home).list_artifacts(run_id, "environment")}
    if run.info.status == "FINISHED":
        assert job.returncode == 0, err
        assert {"config/resolved.yaml", "config/overrides.yaml"} <= names, names
        assert "environment/requirements.txt" in names, names
        lines = [x for x in (out + err).splitlines() if "lost files" in x]
        assert len(lines) == 1 and "written again" in lines[0], out + err
    else:
        assert run.info.status == "FAILED" and "lost" in (out + err), out + err
