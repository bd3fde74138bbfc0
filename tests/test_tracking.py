"""The recorder process and the run handle, against a real SQLite store: every row handed over
arrives once and in order, however the run ends; a recorder that dies is reported; a trainer
that dies leaves its run KILLED with everything it handed over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from tests.helpers import history
from trainlab.config.flat import flatten
from trainlab.tracking.connection import RecorderError
from trainlab.tracking.messages import EndStatus, FinalReport, Message, RunSpec
from trainlab.tracking.recorders import start_recorder
from trainlab.tracking.run import TrackedRun


def spec(client, experiment: str) -> RunSpec:
    return RunSpec(
        uri=client.tracking_uri, experiment_name=experiment, run_name=None, tags={"owner": "test"}
    )


@pytest.mark.parametrize("status", list(EndStatus))
def test_every_row_arrives_once_in_order(home, client, status):
    recorder = start_recorder(client.tracking_uri)
    run = TrackedRun(recorder, spec(client, "sink"), flush_seconds=60)
    for step in range(1234):  # several hand-overs by size, and a partial tail
        values = torch.tensor([step * 1.0, -step * 0.5]) if step % 2 else [step * 1.0, -step * 0.5]
        run.add(["train/loss", "weight/0_0"], values, step)
    info = run.finish(FinalReport(status=status, step=1233, metrics={"final/train_loss": 1.0}))
    assert info.run_id == run.run_id
    record = client.get_run(run.run_id)
    assert record.info.status == status.value and record.data.tags["owner"] == "test"
    assert history(client, run.run_id) == [(s, float(s)) for s in range(1234)]
    assert history(client, run.run_id, "weight/0_0") == [(s, -s * 0.5) for s in range(1234)]
    assert record.data.metrics["final/train_loss"] == 1.0


def test_rows_of_different_widths_and_tags(home, client):
    recorder = start_recorder(client.tracking_uri)
    run = TrackedRun(recorder, spec(client, "mixed"), flush_seconds=60)
    run.add(["a", "b", "c"], torch.tensor([1.0, 2.0, 3.0]), 0)
    run.add(["val/loss"], torch.tensor([4.0]), 0)
    run.add(["x"], [5.0], 1)
    run.set_tags({"stage": 2})
    run.finish(FinalReport(status=EndStatus.FINISHED, step=1))
    record = client.get_run(run.run_id)
    assert record.data.metrics == {"a": 1.0, "b": 2.0, "c": 3.0, "val/loss": 4.0, "x": 5.0}
    assert record.data.tags["stage"] == "2"


def test_a_recorder_that_dies_is_reported(home, client):
    recorder = start_recorder(client.tracking_uri)
    run = TrackedRun(recorder, spec(client, "dies"), flush_seconds=60)
    run.add(["train/loss"], [1.0], 0)
    run.flush()
    assert run.run_id  # it exists and has answered
    recorder.process.kill()
    recorder.process.wait()
    with pytest.raises(RecorderError, match=r"the recorder process stopped \(exit status -9\)"):
        for step in range(1, 100):
            run.add(["train/loss"], [1.0], step)
            run.flush()
        run.finish(FinalReport(status=EndStatus.FINISHED, step=99))


TRAINER = textwrap.dedent(
    """
    import os, sys
    from trainlab.tracking.recorders import start_recorder
    from trainlab.tracking.run import TrackedRun
    from trainlab.tracking.messages import RunSpec
    recorder = start_recorder(sys.argv[1])
    spec = RunSpec(uri=sys.argv[1], experiment_name="killed", run_name=None, tags={})
    run = TrackedRun(recorder, spec, flush_seconds=60)
    for step in range(500):
        run.add(["train/loss"], [float(step)], step)
    run.flush()
    print(run.run_id, flush=True)
    os.kill(os.getpid(), 9)
    """
)


@pytest.mark.slow
def test_a_trainer_killed_hard_leaves_its_run_killed_with_every_row(home, client):
    done = subprocess.run(
        [sys.executable, "-c", TRAINER, client.tracking_uri],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr
    run_id = done.stdout.strip()
    for _ in range(100):  # the recorder notices its trainer is gone and ends the run
        record = client.get_run(run_id)
        if record.info.status != "RUNNING":
            break
        time.sleep(0.1)
    assert record.info.status == "KILLED"
    assert record.data.tags["trainlab.failure"] == "process_ended"
    assert history(client, run_id) == [(s, float(s)) for s in range(500)]


def test_every_kind_of_message_has_one_handler():
    """The recorder dispatches on the message's type: each kind of message tracking/messages.py
    defines has exactly one handler, for the recorder itself or for one run's writer."""
    from trainlab.recorder.dispatch import Dispatcher

    kinds = set(Message.__subclasses__())
    assert not set(Dispatcher.HANDLERS) & set(Dispatcher.RUN_HANDLERS)
    assert set(Dispatcher.HANDLERS) | set(Dispatcher.RUN_HANDLERS) == kinds


def test_flatten_nested_config():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {
        "a.b": 1,
        "a.c.d": [1, 2],
        "e": None,
    }
