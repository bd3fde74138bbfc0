"""Runs whose processes died without a word: recognised (host, pids, heartbeat), listed and ended
KILLED by `trainlab-store stale`, marked when resumed, refused for resume while still alive; and a
sweep whose main process gets SIGTERM while its launcher waits ends its parent run KILLED."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from tests.helpers import all_runs, history, start_cli, store, until
from trainlab.commands import store as store_command
from trainlab.tracking import liveness
from trainlab.tracking.liveness import staleness

FOREVER = ("print_every=0", "max_epochs=100000000", "tracking.plots=false")


def running(client) -> list:
    """The RUNNING runs that have started training."""
    runs = [r for r in all_runs(client) if r.info.status == "RUNNING"]
    return [r for r in runs if "train/loss" in r.data.metrics]


def kill_hard(run) -> None:
    """SIGKILL the run's trainer and its recorder: nobody is left to end the run."""
    for tag in (liveness.PID_TAG, liveness.RECORDER_PID_TAG):
        os.kill(int(run.data.tags[tag]), signal.SIGKILL)


@pytest.mark.slow
def test_a_run_killed_with_its_recorder_is_listed_and_ended_stale(home, client, capsys):
    trainer = start_cli(home, *FOREVER, "tracking.heartbeat_seconds=1")
    try:
        (run,) = until("the run RUNNING", lambda: running(client))
        tags = run.data.tags
        assert tags[liveness.HOST_TAG] == socket.gethostname()
        assert tags[liveness.PID_TAG] == str(trainer.pid)
        assert staleness(tags) is None  # alive
        first = float(tags[liveness.HEARTBEAT_TAG])
        until(
            "a newer heartbeat",
            lambda: (
                float(client.get_run(run.info.run_id).data.tags[liveness.HEARTBEAT_TAG]) > first
            ),
        )
        kill_hard(client.get_run(run.info.run_id))
        trainer.wait(timeout=30)
        time.sleep(1)  # the recorder's exit, too
    finally:
        trainer.kill()
    steps = history(client, run.info.run_id)
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # nobody ended it

    store_command.main(["stale"])
    listed = capsys.readouterr().out
    assert run.info.run_id in listed and "are gone" in listed and "1 run(s) stale" in listed
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # listed, not touched

    store_command.main(["stale", "--mark"])
    assert "marked KILLED" in capsys.readouterr().out
    ended = client.get_run(run.info.run_id)
    assert ended.info.status == "KILLED"
    assert ended.data.tags["trainlab.failure"] == "stale"
    assert "are gone" in ended.data.tags["trainlab.error"]
    assert ended.info.end_time == int(float(ended.data.tags[liveness.HEARTBEAT_TAG]) * 1000)
    assert history(client, run.info.run_id) == steps and len(steps) > 0  # nothing lost
    store_command.main(["stale"])
    assert "No stale runs" in capsys.readouterr().out


@pytest.mark.slow
def test_resume_is_refused_while_the_run_lives_and_marks_it_once_it_died(
    train_in_process, home, client, tmp_path
):
    assert train_in_process("print_every=0", "max_epochs=5", "tracking.plots=false")[0] == 0
    (run,) = all_runs(client)
    checkpoint = client.download_artifacts(run.info.run_id, "checkpoints/last.ckpt", str(tmp_path))
    trainer = start_cli(home, f"resume={checkpoint}", "max_epochs=100000000", "print_every=0")
    try:
        # The resumed run is this trainer's once its tags name it (its rows are held until its
        # next checkpoint: commits.py).
        mine = lambda: client.get_run(run.info.run_id).data.tags.get(liveness.PID_TAG)  # noqa: E731
        until("the resumed run naming its trainer", lambda: mine() == str(trainer.pid))
        status, _, err = train_in_process(f"resume={checkpoint}", "max_epochs=6")
        assert status == 2 and err.count("\n") == 1, err
        assert f"the run is still RUNNING (trainer pid {trainer.pid} on this host)" in err
        assert client.get_run(run.info.run_id).info.status == "RUNNING"
        kill_hard(client.get_run(run.info.run_id))
        trainer.wait(timeout=30)
        time.sleep(1)
    finally:
        trainer.kill()
    status, _, err = train_in_process(f"resume={checkpoint}", "max_epochs=6")
    assert status == 0, err
    resumed = client.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["trainlab.resumed_after"].startswith("stale: its trainer")
    assert resumed.data.tags[liveness.PID_TAG] == str(os.getpid())  # who records it now


def test_staleness_from_the_tags_of_another_host():
    now = 1_000_000.0
    tags = {
        liveness.HOST_TAG: "elsewhere-" + socket.gethostname(),
        liveness.PID_TAG: "1",
        liveness.HEARTBEAT_TAG: f"{now - 100:.0f}",
        liveness.HEARTBEAT_EVERY_TAG: "30",
    }
    assert staleness(tags, now) is None  # 100 s: within 4 beats and a minute
    reason = staleness(tags, now + 200)
    assert reason is not None and "no heartbeat for 300 s" in reason
    assert staleness({liveness.HOST_TAG: "x"}, now) is None  # no heartbeat: cannot tell


@pytest.mark.slow
def test_sigterm_to_a_sweeps_main_process_ends_its_parent_killed(home, client):
    sweep = start_cli(home, "-m", "hydra/launcher=submitit_local", "optimizer.lr=0.01", *FOREVER)
    try:
        children = until(
            "the sweep's child running",
            lambda: [r for r in running(client) if "mlflow.parentRunId" in r.data.tags],
        )
        sweep.send_signal(signal.SIGTERM)  # while the launcher waits on its job
        assert sweep.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        sweep.kill()
    (parent,) = [r for r in all_runs(client) if r.data.tags.get("trainlab.sweep") == "parent"]
    assert parent.info.status == "KILLED"
    for child in children:  # a submitit job lives on; stopped here, it ends KILLED too
        os.kill(int(child.data.tags[liveness.PID_TAG]), signal.SIGTERM)
    until(
        "every child KILLED",
        lambda: all(client.get_run(c.info.run_id).info.status == "KILLED" for c in children),
    )
    assert store(home).get_run(parent.info.run_id).info.status == "KILLED"
