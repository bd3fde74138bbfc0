"""`trainlab-train rerun=<run id>` (+ `rerun.verify=true`) and `trainlab-compare`, read back from a
real MLflow store: a rerun is a new run of exactly the recorded config, bit-identical on the CPU;
overrides go on top and the verification names what differs; a sweep's child reruns as a single
run; compare expands a sweep's parent and shows configs, metrics, data digests and a plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TRAIN, all_runs, history, run_cli
from trainlab.commands.compare import main as compare_main

LEAN = ("print_every=0", "tracking.plots=false", "tracking.log_model=false")
COMPARE = str(Path(sys.executable).with_name("trainlab-compare"))
COMPARED = ("train/loss", "weight/0_0", "bias/0")


def without_rerun_keys(params: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if not k.startswith("rerun.")}


def test_rerun_repeats_the_recorded_config_bit_for_bit(train_in_process, client):
    # Mini-batches and shuffling: the seeded order must come back too.
    recorded = ("max_epochs=7", "optimizer.lr=0.03", "data.batch_size=2", *LEAN)
    assert train_in_process(*recorded)[0] == 0
    (original,) = all_runs(client)
    first = original.info.run_id
    status, out, err = train_in_process(f"rerun={first}", "rerun.verify=true", *LEAN)
    assert status == 0, err
    (rerun,) = [r for r in all_runs(client) if r.info.run_id != first]
    assert rerun.data.tags["trainlab.rerun_of"] == first
    assert rerun.data.params["rerun.run"] == first
    # The recorded values, not today's defaults (max_epochs=100, lr=0.01, full batch).
    assert without_rerun_keys(rerun.data.params) == without_rerun_keys(original.data.params)
    for key in COMPARED:
        assert history(client, rerun.info.run_id, key) == history(client, first, key), key
    assert len(history(client, first)) == 14  # 2 batches x 7 epochs
    assert rerun.data.tags["trainlab.rerun.verdict"] == "bit-identical"
    assert rerun.data.metrics["rerun/max_diff"] == 0.0
    assert rerun.data.metrics["rerun/max_diff/weight/0_0"] == 0.0
    assert "bit-identical" in out and f"Rerun of {first}" in out

    # Overrides go on top: a group choice takes today's option, a key its value.
    status, out, err = train_in_process(
        f"rerun={first}", "rerun.verify=true", "optimizer=adam", "optimizer.lr=0.05", *LEAN
    )
    assert status == 0, err
    (changed,) = [r for r in all_runs(client) if r.info.run_id not in (first, rerun.info.run_id)]
    assert changed.data.params["optimizer._target_"] == "torch.optim.Adam"
    assert changed.data.params["optimizer.lr"] == "0.05"
    assert (
        changed.data.params["max_epochs"] == "7" and changed.data.params["data.batch_size"] == "2"
    )
    tags = changed.data.tags
    assert tags["trainlab.rerun.verdict"] == "differs"
    assert "optimizer._target_ torch.optim.SGD -> torch.optim.Adam" in tags["trainlab.rerun.reason"]
    assert "optimizer.lr 0.03 -> 0.05" in tags["trainlab.rerun.reason"]
    assert changed.data.metrics["rerun/max_diff"] > 0
    assert "largest difference" in out and "why: these differ" in out


@pytest.mark.slow
def test_a_sweep_child_reruns_alone_and_compare_lines_the_runs_up(home, client, capsys):
    done = run_cli("-m", "optimizer.lr=0.01,0.02", "max_epochs=20", *LEAN, home=home)
    assert done.returncode == 0, done.stderr
    runs = all_runs(client)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = sorted(
        (r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
        key=lambda r: r.data.params["optimizer.lr"],
    )
    assert len(children) == 2
    child = children[1]
    done = run_cli(f"rerun={child.info.run_id}", "rerun.verify=true", *LEAN, home=home)
    assert done.returncode == 0, done.stderr
    assert "bit-identical" in done.stdout
    command = f"{TRAIN} rerun={child.info.run_id} rerun.verify=true"  # as typed, not as expanded
    (rerun,) = [r for r in all_runs(client) if r.info.run_id not in {x.info.run_id for x in runs}]
    assert "mlflow.parentRunId" not in rerun.data.tags  # a single run
    assert rerun.data.tags["trainlab.command"].endswith(command + " " + " ".join(LEAN))
    assert rerun.info.experiment_id == child.info.experiment_id
    assert rerun.data.params["optimizer.lr"] == "0.02"
    assert history(client, rerun.info.run_id) == history(client, child.info.run_id)

    # The sweep's parent stands for its two children.
    compare_main([parent.info.run_id])
    text = capsys.readouterr().out
    assert "optimizer.lr  0.01" in text and "0.02" in text
    assert child.info.run_id in text and children[0].info.run_id in text
    plot = Path(text.strip().splitlines()[-1].removeprefix("Plot of train/loss: "))
    assert plot.is_absolute() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # --json, as a script calls the console script; a child and its rerun differ only by rerun.*
    out = home / "overlay.png"
    done = subprocess.run(
        [COMPARE, children[0].info.run_id, child.info.run_id, rerun.info.run_id, "--json",
         "--plot", str(out), "--tracking-uri", client.tracking_uri],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [r["run_id"] for r in result["runs"]] == [
        children[0].info.run_id, child.info.run_id, rerun.info.run_id,
    ]  # fmt: skip
    assert result["config"]["optimizer.lr"] == ["0.01", "0.02", "0.02"]
    losses = result["metrics"]["final/train_loss"]
    assert losses[1] == losses[2] != losses[0]
    digests = {d["digest"] for run in result["datasets"] for d in run}
    assert len(digests) == 1  # the same rows in all three runs
    assert result["plot"] == str(out) and out.stat().st_size > 0

    with pytest.raises(SystemExit) as stopped:
        compare_main(["0123456789abcdef", child.info.run_id])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"trainlab-compare: error: no run '0123456789abcdef' in the store {client.tracking_uri}"
    ]
