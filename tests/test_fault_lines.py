"""What a run says when something is wrong: one line in the user's terms, no wrong line before it,
and every printed resume command one that works (real runs, real store, real processes)."""

from __future__ import annotations

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
