"""DDP through Lightning under Hydra: 2 CPU processes (gloo) against one process, a single run
(ddp: Lightning re-runs the command) and a multirun (ddp_spawn), plus the SLURM recipe's job."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose
from hydra.core.hydra_config import HydraConfig

from tests.helpers import all_runs, run_cli, run_composed
from trainlab.config.checks import check_config, check_sharding
from trainlab.config.runtime import DeviceConfig
from trainlab.config.training import LBFGSConfig
from trainlab.data.batches import TensorBatches
from trainlab.engines import distributed, ranks
from trainlab.errors import ConfigError

# float64 so that DDP and one process may differ only by the order of a sum.
COMMON = ("max_epochs=20", "device.precision=64", "print_every=5")
TOLERANCE = 1e-9


def one_process_runs(composed, client, *datasets: str) -> dict[str, dict]:
    """The same jobs in this process on one device: {data: {'loss': [...], 'final': x}}."""
    results = {}
    for data in datasets:
        cfg = composed(f"data={data}", *COMMON, "experiment_name=baseline", "print_every=0")
        run_composed(cfg)
        experiment = client.get_experiment_by_name("baseline")
        run = client.search_runs([experiment.experiment_id], max_results=1)[0]
        results[data] = history_and_final(client, run)
    return results


def history_and_final(client, run) -> dict:
    history = client.get_metric_history(run.info.run_id, "train/loss")
    return {
        "steps": [m.step for m in history],
        "loss": [m.value for m in history],
        "final": run.data.metrics["final/train_loss"],
    }


def test_batches_are_equal_disjoint_shares_of_each_global_batch():
    x = torch.arange(10.0).reshape(-1, 1)
    single = list(TensorBatches(x, x, 4, True, seed=3))
    ranks = [list(TensorBatches(x, x, 4, True, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 3
    for whole, share0, share1 in zip(single, *ranks, strict=True):
        assert len(share0[0]) == len(share1[0]) == len(whole[0]) // 2
        assert torch.equal(torch.cat([share0[0], share1[0]]), whole[0])
    # 9 rows over 2 ranks: 8 are used each epoch, each by exactly one rank.
    x = torch.arange(9.0).reshape(-1, 1)
    shares = [TensorBatches(x, x, None, False, 0, rank=r, world_size=2) for r in (0, 1)]
    rows = [next(iter(s))[0].reshape(-1).tolist() for s in shares]
    assert rows == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]


def test_strategy_by_where_the_job_runs(composed, monkeypatch):
    ddp = DeviceConfig(devices=2)
    assert distributed.choose_strategy(DeviceConfig()) == "auto"  # one process
    assert distributed.choose_strategy(ddp) == "ddp"  # a single run: Lightning re-runs it
    multirun = compose("train", overrides=["hydra.mode=MULTIRUN"], return_hydra_config=True)
    HydraConfig.instance().set_config(multirun)
    try:
        assert distributed.choose_strategy(ddp) == "ddp_spawn"
        with pytest.raises(ConfigError, match="re-runs the whole Hydra multirun"):
            distributed.choose_strategy(DeviceConfig(devices=2, strategy="ddp"))
        # Under SLURM every task is a rank already: plain ddp, also inside the sweep.
        monkeypatch.setenv("SLURM_NTASKS", "2")
        monkeypatch.setenv("SLURM_JOB_NAME", "train")
        assert distributed.choose_strategy(ddp) == "ddp"
    finally:
        HydraConfig.instance().cfg = None
    for name in ranks.RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert ranks.is_tracking_process(ddp)
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert not ranks.is_tracking_process(ddp)
    assert ranks.is_tracking_process(DeviceConfig())  # one process always tracks


def test_batch_that_does_not_split_over_the_processes_is_refused(composed):
    with pytest.raises(ConfigError, match=r"data.batch_size=3 .* multiple of 2"):
        check_sharding(DeviceConfig(devices=2), 3, 8)
    with pytest.raises(ConfigError, match="at least one row per process"):
        check_sharding(DeviceConfig(devices=2, num_nodes=2), None, 3)
    check_sharding(DeviceConfig(devices=2), 4, 8)
    with pytest.raises(ConfigError, match="optimizer=lbfgs cannot run under DDP"):
        check_config(composed("device=ddp", "optimizer=lbfgs"))
    assert isinstance(check_config(composed("optimizer=lbfgs")).optimizer, LBFGSConfig)


def assert_matches(ddp: dict, single: dict) -> None:
    assert ddp["steps"] == single["steps"] == list(range(20))  # one point per step, not per rank
    assert max(abs(a - b) for a, b in zip(ddp["loss"], single["loss"], strict=True)) < TOLERANCE
    assert abs(ddp["final"] - single["final"]) < TOLERANCE


@pytest.mark.slow
def test_ddp_single_run_one_mlflow_run_same_loss(home, client, composed):
    done = run_cli("device=ddp", "data=seed", *COMMON, "experiment_name=ddp", home=home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("epoch 0, w = ") == 1  # rank 1 trains silently
    runs = all_runs(client)
    assert len(runs) == 1, "rank 1 must not open a run of its own"
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["trainlab.strategy"] == "ddp"
    assert run.data.params["device.devices"] == "2"
    # Rank 1 re-ran the command in rank 0's Hydra folder: one folder, one .hydra.
    folders = [p for p in (home / "outputs").glob("*/*") if p.is_dir()]
    assert len(folders) == 1, folders
    assert (folders[0] / "train_ddp_process_1.log").is_file()
    assert len(list(home.rglob(".hydra"))) == 1
    ddp = history_and_final(client, run)
    single = one_process_runs(composed, client, "seed")["seed"]
    assert_matches(ddp, single)
    assert single["final"] < single["loss"][0] / 10  # it did learn


@pytest.mark.slow
def test_ddp_inside_a_multirun_spawns_and_tracks_once_per_job(home, client, composed):
    done = run_cli(
        "-m", "device=ddp", "data=seed,synthetic", *COMMON, "experiment_name=ddp", home=home
    )
    assert done.returncode == 0, done.stderr
    every = all_runs(client)
    runs = [r for r in every if "mlflow.parentRunId" in r.data.tags]
    assert len(every) == len(runs) + 1  # and the sweep's parent run
    assert sorted(r.data.params["data.name"] for r in runs) == ["seed", "synthetic"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["trainlab.strategy"] for r in runs} == {"ddp_spawn"}
    # Beside the sweep's folder, multirun/.sweeps/ holds its identity (to continue it).
    sweeps = [p for p in (home / "multirun").glob("*/*") if p.is_dir()]
    assert len(sweeps) == 1 and sorted(p.name for p in sweeps[0].iterdir() if p.is_dir()) == [
        "0",
        "1",
    ]
    singles = one_process_runs(composed, client, "seed", "synthetic")
    for run in runs:
        assert_matches(history_and_final(client, run), singles[run.data.params["data.name"]])
        # the run's final metrics sit at the last step, also when the steps ran elsewhere
        final = client.get_metric_history(run.info.run_id, "final/train_loss")
        assert [m.step for m in final] == [19]


@pytest.mark.slow
def test_slurm_recipe_generates_a_multi_node_job(home, tmp_path, monkeypatch):
    """The recipe's real sbatch script, caught by a stand-in `sbatch` (no cluster here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        '#!/bin/sh\ncp "$1" "$SBATCH_CAPTURE"\necho "sbatch: error: no SLURM here" >&2\nexit 1\n'
    )
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it first
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    capture = tmp_path / "job.sh"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_CAPTURE", str(capture))
    done = run_cli(
        "-m",
        "experiment=slurm_ddp",
        "device.num_nodes=3",
        "device.devices=2",
        "seed=1,2",
        # The sweep's parent run is created before submission: here in the embedded store, on a
        # cluster on the team server the recipe names (no server runs in this test).
        f"tracking.uri=sqlite:///{home / 'mlflow.db'}",
        home=home,
    )
    assert done.returncode != 0 and "no SLURM here" in done.stderr
    script = capture.read_text()
    for line in (
        "#SBATCH --nodes=3",
        "#SBATCH --ntasks-per-node=2",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --array=0-1",  # one SLURM job per sweep point
        "#SBATCH --requeue",  # a preempted or timed-out job continues its run
        "#SBATCH --signal=USR2@120",
    ):
        assert line in script, script
    assert "srun " in script and "submitit.core._submit" in script
    assert str(Path(home / "multirun")) in script  # absolute, under TRAINLAB_HOME
