"""Hard kills, periodic checkpoints that commit with the metrics, `resume=auto`, and submitit's
preemption, on a real store with real `trainlab-train` processes (CPU, float64).

After a kill the recorded history ends where the committed checkpoint is (or, when the recorder
died in the middle of a commit, the resume skips what is already there); `resume=auto` continues
the same run, and the result equals a run that was never interrupted, value for value.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import all_runs, history, start_cli

COMMON = (
    "print_every=0",
    "device.precision=64",
    "tracking.plots=false",
    "tracking.log_model=false",
)
CASES = {
    # One step per epoch: checkpoints at epoch ends; momentum and a step schedule must come back.
    "full_batch": (
        "max_epochs=1500", "checkpoint.every_n_steps=100", "optimizer.momentum=0.9",
        "optimizer.lr=0.001", "scheduler=step", "scheduler.step_size=400",
    ),
    # 40 shuffled batches per epoch and validation: checkpoints inside epochs (every 13 steps is
    # shorter than an epoch), so the batcher's order and position must come back too.
    "mini_batch": (
        "data=synthetic", "data.n_samples=400", "data.batch_size=8", "data.val_split=0.2",
        "optimizer=adam", "optimizer.lr=0.01", "max_epochs=30", "checkpoint.every_n_steps=13",
    ),
}  # fmt: skip
KEYS = ("train/loss", "weight/0_0", "bias/0")
STEP_TAG, COMMITTING_TAG = "trainlab.checkpoint.step", "trainlab.checkpoint.committing"


def wait_for_commit(client, experiment: str, process: subprocess.Popen, timeout: float = 120):
    """The run, once its first periodic checkpoint is committed (the trainer still training)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id]) if found else []
        if runs and int(runs[0].data.tags.get(STEP_TAG, "0")) > 0:
            return runs[0]
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.kill()
    raise AssertionError("no checkpoint was committed")


def recorder_of(pid: int) -> int:
    """The recorder process a trainer started (its child running trainlab.recorder)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            child = int((entry / "stat").read_text().split()[3]) == pid
            if child and b"trainlab.recorder" in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except OSError:
            continue
    raise AssertionError(f"process {pid} has no recorder")


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def only_run(client, experiment: str):
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "victims"),
    [("full_batch", "trainer"), ("mini_batch", "trainer"), ("mini_batch", "both")],
)
def test_hard_kill_then_resume_auto_equals_an_uninterrupted_run(
    train_in_process, client, home, case, victims
):
    args = (*COMMON, *CASES[case], "seed=5")
    assert train_in_process(*args, "experiment_name=whole")[0] == 0
    whole = only_run(client, "whole")

    process = start_cli(home, *args, "experiment_name=parts", "resume=auto")
    run = wait_for_commit(client, "parts", process)
    if victims == "both":  # the machine goes: the recorder cannot end the run
        os.kill(recorder_of(process.pid), signal.SIGKILL)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    run_id = run.info.run_id
    deadline = time.monotonic() + 60
    while victims == "trainer" and client.get_run(run_id).info.status == "RUNNING":
        assert time.monotonic() < deadline, "the recorder never ended the run"
        time.sleep(0.1)
    killed = client.get_run(run_id)
    committed = int(killed.data.tags[STEP_TAG])
    steps = [s for s, _ in history(client, run_id)]
    assert steps == list(range(len(steps)))  # never a gap
    if victims == "trainer":
        assert killed.info.status == "KILLED"
        # Exactly where the checkpoint is: the rows after it were dropped (they are recomputed).
        assert len(steps) == committed
        for key in KEYS[1:]:
            assert len(history(client, run_id, key)) == committed
        folder = Path(killed.data.tags["trainlab.checkpoint.dir"])
        assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == committed
    else:  # a commit may have been cut short: never beyond what it was committing
        assert killed.info.status == "RUNNING"
        assert committed <= len(steps) <= int(killed.data.tags[COMMITTING_TAG])

    status, out, err = train_in_process(*args, "experiment_name=parts", "resume=auto")
    assert status == 0, err
    assert f"Resuming run {run_id} at step " in out
    resumed = only_run(client, "parts")  # the same run went on; nothing new was created
    assert resumed.info.run_id == run_id and resumed.info.status == "FINISHED"
    assert "trainlab.failure" not in resumed.data.tags
    keys = (*KEYS, "val/loss") if case == "mini_batch" else KEYS
    for key in keys:  # no gap, no repeat, the very same values
        assert history(client, run_id, key) == history(client, whole.info.run_id, key), key
    assert resumed.data.metrics["final/train_loss"] == whole.data.metrics["final/train_loss"]
    ours = weights(Path(resumed.data.tags["trainlab.checkpoint.dir"]) / "last.ckpt")
    theirs = weights(Path(whole.data.tags["trainlab.checkpoint.dir"]) / "last.ckpt")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_resume_auto_without_a_run_starts_fresh_and_tags_the_job(train_in_process, client):
    status, out, _ = train_in_process("max_epochs=3", "print_every=0", "resume=auto")
    assert status == 0 and "no unfinished run of this job" in out
    (run,) = all_runs(client)
    key = run.data.tags["trainlab.job_key"]
    # A finished run is not continued: the same command starts a new run of the same job.
    assert train_in_process("max_epochs=3", "print_every=0", "resume=auto")[0] == 0
    runs = all_runs(client)
    assert len(runs) == 2 and {r.data.tags["trainlab.job_key"] for r in runs} == {key}
    # Another config is another job.
    assert train_in_process("max_epochs=3", "print_every=0", "seed=1")[0] == 0
    keys = {r.data.tags["trainlab.job_key"] for r in all_runs(client)}
    assert len(keys) == 2


def processes_with(text: str) -> list[int]:
    """Processes whose command line holds `text` (this test's own: `text` is its tmp home)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_submitit_preemption_requeues_and_continues_the_same_run(train_in_process, client, home):
    """submitit's simulated preemption (USR2 to the job, as `job._interrupt()` sends): the run
    stops at a step with a checkpoint, submitit requeues the job, the job resumes its run."""
    args = (*COMMON, *CASES["full_batch"], "seed=5")
    assert train_in_process(*args, "experiment_name=whole")[0] == 0
    whole = only_run(client, "whole")

    sweep = start_cli(home, "-m", "hydra/launcher=submitit_local", *args, "experiment_name=parts")
    deadline = time.monotonic() + 120
    while True:  # the job's run (the sweep's child), once it has committed a checkpoint
        found = client.get_experiment_by_name("parts")
        runs = client.search_runs([found.experiment_id]) if found else []
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        if children and int(children[0].data.tags.get(STEP_TAG, "0")) > 0:
            break
        assert time.monotonic() < deadline and sweep.poll() is None, sweep.communicate()
        time.sleep(0.02)
    (job,) = jobs_of(home)
    os.kill(job, signal.SIGUSR2)
    _, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err

    run_id = children[0].info.run_id
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 2  # the parent and its one child: the requeued job made no new run
    resumed = client.get_run(run_id)
    assert resumed.info.status == "FINISHED"
    assert int(resumed.data.tags["trainlab.resumed_at_step"]) > 0
    for key in KEYS:
        assert history(client, run_id, key) == history(client, whole.info.run_id, key), key
    assert resumed.data.metrics["final/train_loss"] == whole.data.metrics["final/train_loss"]


def jobs_of(home: Path) -> list[int]:
    """submitit's job processes (not its controller) of the sweep under `home`."""
    return [p for p in processes_with(str(home)) if _cmdline(p).count("submitit.core._submit")]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_signal_inside_an_epoch_resumes_exactly(train_in_process, client, home):
    """SIGTERM between two batches: the checkpoint holds the batcher's order and position, so
    the resumed run trains the rest of that epoch (before, Lightning skipped it)."""
    # The trainer's own printed lines say where it is: the store can lag the whole fit behind
    # while the recorder starts on a busy machine, so rows seen there do not mean "still training".
    args = (
        *(arg for arg in COMMON if not arg.startswith("print_every")), "print_every=20",
        *CASES["mini_batch"][:6], "max_epochs=40", "checkpoint.every_seconds=null",
        "tracking.flush_every_seconds=0.05", "seed=5",
    )  # fmt: skip
    assert train_in_process(*args, "experiment_name=whole")[0] == 0
    whole = only_run(client, "whole")
    process = start_cli(home, *args, "experiment_name=parts", unbuffered=True)
    for _ in range(3):  # its lines for steps 0, 20 and 40 of 1600: the signal comes in epoch 1
        assert process.stdout.readline(), process.communicate()
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    (run,) = client.search_runs([client.get_experiment_by_name("parts").experiment_id])
    run_id = run.info.run_id
    stopped = len(history(client, run_id))  # inside an epoch but for 1 time in 40
    status, out, err = train_in_process(f"resume={run_id}")
    assert status == 0, err
    assert f"Resuming run {run_id} at step {stopped}" in out
    for key in (*KEYS, "val/loss"):
        assert history(client, run_id, key) == history(client, whole.info.run_id, key), key
