"""The parallel launcher's slots (and threads over Hydra's submitit launcher): an Optuna
search's trials start as soon as a slot frees (no batch waits for its slowest trial), and `hydra.launcher.gpus_per_job=K` gives each job its own
devices (what each job's process sees), at most devices // K at once, or one line on a machine
without them. Real `trainlab-train -m` processes."""

from __future__ import annotations

import pytest

from tests.helpers import all_runs, run_cli, store
from tests.test_sweep_resume import LEAN, children_of

pytestmark = pytest.mark.slow  # end to end: real processes


# Each submitit job is a fresh process (seconds to start), so its long trial is longer; on
# submitit a thread per slot hands the launcher a batch of one (sweeps/launch_threads.py).
@pytest.mark.parametrize("launcher, long_epochs", [("parallel", 3000), ("submitit_local", 20000)])
def test_asynchronous_trials_start_as_soon_as_a_slot_frees(home, launcher, long_epochs):
    # One long trial among short ones; the grid's seed puts it among the first two.
    search = (
        "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "hydra.sweeper.sampler.seed=5",
        f"max_epochs=choice({long_epochs},10,11)", "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=2", f"hydra/launcher={launcher}", "print_every=0", *LEAN,
    )  # fmt: skip
    done = run_cli(*search, home=home, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Asynchronous trials: 2 jobs at once" in done.stdout + done.stderr
    _, children = children_of(store(home))
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    epochs = [int(c.data.params["max_epochs"]) for c in children]
    assert long_epochs in epochs[:2]  # the long trial is one of the first two started
    long = children[epochs.index(long_epochs)]
    # Every short trial started (and the third ended) while the long one trained; batches of
    # two would start the third after it ended.
    others = [c for c in children if c is not long]
    assert all(c.info.end_time < long.info.end_time for c in others)
    assert all(c.info.start_time < long.info.end_time for c in others)


def test_each_job_sees_its_own_devices(home):
    sweep = ("-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=4",
             "hydra.launcher.gpus_per_job=2", "optimizer.lr=0.01,0.02,0.03", "max_epochs=300",
             "device=cpu", *LEAN)  # fmt: skip
    done = run_cli(*sweep, home=home, extra_env={"CUDA_VISIBLE_DEVICES": "0,1,2,3,4"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 jobs, 2 at once" in done.stdout + done.stderr  # 5 devices // 2
    _, children = children_of(store(home))
    seen = [c.data.tags["trainlab.devices"] for c in children]
    assert set(seen) <= {"0,1", "2,3"} and len(seen) == 3
    # Two jobs that ran at the same time never shared a device.
    for a in children:
        for b in children:
            overlap = a.info.start_time < b.info.end_time and b.info.start_time < a.info.end_time
            if a is not b and overlap:
                assert a.data.tags["trainlab.devices"] != b.data.tags["trainlab.devices"]


def test_gpus_per_job_without_gpus_is_one_line(home):
    sweep = ("-m", "hydra/launcher=parallel", "hydra.launcher.gpus_per_job=1",
             "optimizer.lr=0.01,0.02", "max_epochs=2")  # fmt: skip
    done = run_cli(*sweep, home=home, extra_env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line == (
        "trainlab-train: error: hydra.launcher.gpus_per_job=1: this machine has no GPU; "
        "expected hydra.launcher.gpus_per_job=0"
    )
    assert all_runs(store(home)) == []  # nothing recorded
