"""The cluster path for real: jobs on the single-node SLURM cluster that scripts/ci-slurm.sh
starts (`.ci/run` calls it), and a 2-node DDP job simulated on this machine with two torchrun
processes meeting at a loopback rendezvous.

Without a cluster the SLURM tests are skipped with the reason, except in CI (CI=true), where
that is a failure. The stand-in `sbatch` test of the multi-node recipe stays in test_ddp.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import TRAIN, all_runs, free_port, history, run_cli
from tests.test_ddp import COMMON, assert_matches, history_and_final, one_process_runs

pytestmark = pytest.mark.slow

PARTITION = "debug"  # the partition scripts/ci-slurm.sh defines
TORCHRUN = str(Path(sys.executable).parent / "torchrun")


def no_cluster_reason() -> str | None:
    if shutil.which("srun") is None or shutil.which("sinfo") is None:
        return "SLURM is not installed (no srun); run scripts/ci-slurm.sh as root"
    try:
        done = subprocess.run(["sinfo", "--noheader", f"--partition={PARTITION}", "--format=%T"],
                              capture_output=True, text=True, timeout=20)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "the SLURM controller does not answer (sinfo timed out); run scripts/ci-slurm.sh"
    usable = ("idle", "mixed", "allocated", "completing")
    if done.returncode != 0 or not any(s.startswith(usable) for s in done.stdout.split()):
        return f"no SLURM node takes jobs ({done.stdout.strip() or done.stderr.strip()}); run scripts/ci-slurm.sh"
    return None


@pytest.fixture(scope="session")
def slurm_partition() -> str:
    reason = no_cluster_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return PARTITION


def local_env(home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")
    }
    return env | {"TRAINLAB_HOME": str(home)}


def assert_one_run_like_one_process(done_stdout: str, client, composed, strategy: str) -> None:
    assert done_stdout.count("epoch 0, w = ") == 1  # only global rank 0 prints
    assert done_stdout.count("Prediction before training") == 1
    (run,) = all_runs(client)  # one MLflow run for the whole job
    assert run.info.status == "FINISHED"
    assert run.data.tags["trainlab.strategy"] == strategy
    ddp = history_and_final(client, run)
    assert_matches(ddp, one_process_runs(composed, client, "seed")["seed"])


def test_ddp_with_two_srun_tasks_records_one_run_with_the_single_process_loss(
    slurm_partition, home, client, composed
):
    """Two SLURM tasks: every task runs the whole job, ranks come from SLURM_PROCID."""
    command = ["srun", f"--partition={slurm_partition}", "--nodes=1", "--ntasks-per-node=2",
               "--cpus-per-task=1", "--time=10", TRAIN, "device=ddp", "data=seed", *COMMON,
               "experiment_name=srun_ddp"]  # fmt: skip
    done = subprocess.run(command, cwd=home, env=local_env(home), capture_output=True,
                          text=True, timeout=400)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert_one_run_like_one_process(done.stdout, client, composed, "ddp")


def test_two_nodes_simulated_with_torchrun_record_one_run(home, client, composed):
    """`torchrun --nnodes 2`, one process per node, both on this machine (loopback rendezvous)."""
    port = free_port()

    def node(rank: int) -> subprocess.Popen:
        command = [TORCHRUN, "--nnodes=2", "--nproc-per-node=1", f"--node-rank={rank}",
                   "--master-addr=127.0.0.1", f"--master-port={port}", "--no-python", TRAIN,
                   "device=ddp", "device.devices=1", "device.num_nodes=2", "data=seed",
                   *COMMON, "experiment_name=two_nodes"]  # fmt: skip
        return subprocess.Popen(command, cwd=home, env=local_env(home), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    nodes = [node(0), node(1)]
    results = [n.communicate(timeout=400) for n in nodes]
    for process, (_, err) in zip(nodes, results, strict=True):
        assert process.returncode == 0, err[-3000:]
    assert results[1][0].count("epoch 0, w = ") == 0  # the second node's rank trains silently
    assert_one_run_like_one_process(results[0][0], client, composed, "ddp")


def test_slurm_launcher_sweep_is_tracked_on_the_authenticated_server(
    slurm_partition, team, home, monkeypatch
):
    """`hydra/launcher=slurm`: each job is a SLURM task that signs in with the user's
    MLFLOW_TRACKING_* (inherited through sbatch) and records its run on the team server."""
    done = run_cli("-m", "hydra/launcher=slurm", f"hydra.launcher.partition={slurm_partition}",
                   "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
                   "tracking=server", "experiment_name=team_slurm", "seed=0,1",
                   "max_epochs=20", "print_every=0", home=home, timeout=400,
                   extra_env=team.client_env("alice"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for key, value in team.client_env("alice").items():
        monkeypatch.setenv(key, value)
    server = MlflowClient(tracking_uri=team.url)
    experiment = server.get_experiment_by_name("team_slurm")
    every = server.search_runs([experiment.experiment_id])
    children = [r for r in every if "mlflow.parentRunId" in r.data.tags]
    assert len(every) == 3 and len(children) == 2  # the sweep's parent and its two jobs
    assert {r.info.status for r in every} == {"FINISHED"}
    for child in children:
        assert [step for step, _ in history(server, child.info.run_id)] == list(range(20))
    # The jobs' folders (submitit's scripts, pickles and logs) hold no password.
    for path in (home / "multirun").rglob("*"):
        if path.is_file():
            assert team.passwords["alice"].encode() not in path.read_bytes(), path
