"""Interruption (SIGINT, SIGTERM) and resume, read back from a real MLflow store.

A resumed run must be the same MLflow run, carry on at the next step, and end with exactly the
weights and the loss history of a run that was never interrupted (CPU, float64, same seed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import TRAIN, all_runs, run_cli

pytestmark = pytest.mark.slow  # end to end: real subprocesses and servers


def history(client, run_id: str, key: str = "train/loss") -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def checkpoint_weights(client, run_id: str, folder: Path) -> dict[str, torch.Tensor]:
    path = client.download_artifacts(run_id, "checkpoints/last.ckpt", str(folder))
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


CASES = {
    # Full batch; momentum and a step schedule, so optimizer and scheduler state must come back.
    "full_batch": (
        "optimizer.momentum=0.9",
        "optimizer.lr=0.005",
        "scheduler=step",
        "scheduler.step_size=7",
        "scheduler.gamma=0.5",
        "max_epochs=30",
    ),
    # Shuffled mini-batches with validation: the batcher's generator state must come back too.
    "mini_batch": (
        "data=synthetic",
        "data.n_samples=40",
        "data.batch_size=8",
        "data.val_split=0.2",
        "optimizer=adam",
        "optimizer.lr=0.05",
        "max_epochs=6",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resumed_run_equals_uninterrupted_run(train_in_process, client, tmp_path, case):
    common = (*CASES[case], "device.precision=64", "print_every=0", "seed=3")
    assert train_in_process(*common, "experiment_name=whole")[0] == 0
    # Stopped by a limit half way (an epoch boundary), then resumed to the full length.
    stop = ("max_epochs=3",) if case == "mini_batch" else ("max_steps=11",)
    assert train_in_process(*common, *stop, "experiment_name=parts")[0] == 0
    (whole,) = client.search_runs([client.get_experiment_by_name("whole").experiment_id])
    (part,) = client.search_runs([client.get_experiment_by_name("parts").experiment_id])
    first_steps = len(history(client, part.info.run_id))
    assert 0 < first_steps < len(history(client, whole.info.run_id))

    more = ("max_epochs=6",) if case == "mini_batch" else ("max_steps=-1",)
    # `tracking=<option>` says where the run is (here the default store), nothing more.
    status, out, err = train_in_process(f"resume={part.info.run_id}", *more, "tracking=sqlite")
    assert status == 0, err
    assert f"Resuming run {part.info.run_id} at step {first_steps}" in out
    assert len(all_runs(client)) == 2  # the same run went on; nothing new was created
    resumed = client.get_run(part.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["trainlab.resumed_at_step"] == str(first_steps)
    # No gap, no repeat, and the very same values as the run that was never stopped.
    for key in ("train/loss", "weight/0_0", "bias/0"):
        assert history(client, part.info.run_id, key) == history(client, whole.info.run_id, key)
    if case == "mini_batch":
        assert history(client, part.info.run_id, "val/loss") == history(
            client, whole.info.run_id, "val/loss"
        )
    a = checkpoint_weights(client, whole.info.run_id, tmp_path / "a")
    b = checkpoint_weights(client, part.info.run_id, tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.data.metrics["final/train_loss"] == whole.data.metrics["final/train_loss"]


def test_resume_refuses_changes_to_what_is_trained(train_in_process, client, tmp_path):
    assert train_in_process("max_epochs=3", "print_every=0")[0] == 0
    (run,) = all_runs(client)
    status, _, err = train_in_process(f"resume={run.info.run_id}", "optimizer.lr=0.5")
    assert status == 2 and err.startswith("trainlab-train: error: ")
    assert "optimizer.lr (0.01 recorded, 0.5 given) cannot change when resuming" in err
    status, _, err = train_in_process("resume=0123456789abcdef")
    assert status == 2 and "no run '0123456789abcdef' in the store" in err
    status, _, err = train_in_process("resume=missing.ckpt")
    assert status == 2 and "resume='missing.ckpt': no such checkpoint file" in err
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    # A checkpoint file names its run: resuming from the file continues that run.
    path = client.download_artifacts(run.info.run_id, "checkpoints/last.ckpt", str(tmp_path))
    status, out, err = train_in_process(f"resume={path}", "max_epochs=5", "print_every=0")
    assert status == 0, err
    assert f"Resuming run {run.info.run_id} at step 3" in out
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert steps == list(range(5))
    assert len(all_runs(client)) == 1


def start_long_run(home: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    env["TRAINLAB_HOME"] = str(home)
    return subprocess.Popen(
        [TRAIN, "max_epochs=1000000", "print_every=200", *args],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 120) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    process.kill()
    raise AssertionError(f"{text!r} never printed: {''.join(lines)}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_ends_run_killed_with_every_step_and_a_checkpoint(home, client, signum):
    process = start_long_run(home)
    wait_for_line(process, "epoch 400,")
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    assert f"{signal.Signals(signum).name} received: stopping after this step" in err
    assert "Traceback" not in err
    (run,) = all_runs(client)
    assert run.info.status == "KILLED"
    steps = [step for step, _ in history(client, run.info.run_id)]
    assert steps == list(range(len(steps))) and len(steps) > 400  # every step, none missing
    for key in ("weight/0_0", "bias/0"):
        assert len(history(client, run.info.run_id, key)) == len(steps)
    assert "pred/before" in run.data.metrics
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
    assert artifacts == ["checkpoints/best-1.ckpt", "checkpoints/last.ckpt"]
    state = torch.load(
        client.download_artifacts(run.info.run_id, "checkpoints/last.ckpt", str(home / "dl")),
        map_location="cpu",
        weights_only=True,
    )
    assert state["global_step"] == len(steps)  # the checkpoint is the last logged step
    assert f"Resume with: trainlab-train resume={run.info.run_id}" in out
    if signum == signal.SIGINT:
        return  # one resume from a signal is enough (each subprocess costs seconds)

    # Resuming goes on at the next step in the same run and ends FINISHED.
    done = run_cli(f"resume={run.info.run_id}", f"max_steps={len(steps) + 50}", home=home)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    resumed = client.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert [s for s, _ in history(client, run.info.run_id)] == list(range(len(steps) + 50))


def test_second_signal_exits_at_once(home):
    process = start_long_run(home)
    wait_for_line(process, "epoch 200,")
    # SIGSTOP holds the process so that both signals are pending when it resumes.
    process.send_signal(signal.SIGSTOP)
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGCONT)
    _, err = process.communicate(timeout=60)
    assert "second SIG" in err and "exiting now" in err, err
    assert process.returncode in (128 + signal.SIGINT, 128 + signal.SIGTERM)
