"""`trainlab.train(...)` from Python: the same run the command line records, callable again in
the same process, one exception with the command's own line for a bad value, and the process
goes on (a real store, real composition, the real recorder)."""

from __future__ import annotations

import pytest

import trainlab
from tests.helpers import all_runs, run_cli

SEED = ["experiment=seed_pipeline", "print_every=0", "max_epochs=20"]


def test_two_runs_in_one_process_record_what_the_command_line_records(home, client):
    first = trainlab.train(SEED)
    second = trainlab.train([*SEED, "optimizer.lr=0.02", "+tags.owner=api"])
    assert first.run_id != second.run_id
    runs = {run.info.run_id: run for run in all_runs(client)}
    assert set(runs) == {first.run_id, second.run_id}
    recorded = runs[second.run_id]
    assert recorded.info.status == "FINISHED" and recorded.data.tags["owner"] == "api"
    assert recorded.data.params["optimizer.lr"] == "0.02" == str(second.config["optimizer"]["lr"])
    assert second.metrics["final/train_loss"] == recorded.data.metrics["final/train_loss"]
    assert second.objective == second.metrics["final/train_loss"]
    assert second.model_uri is not None and second.model_uri.startswith("models:/")
    command = recorded.data.tags["trainlab.command"]
    assert command.startswith("trainlab.train(") and "optimizer.lr=0.02" in command
    # The same overrides on the command line record the same config, param for param.
    done = run_cli(*SEED, "optimizer.lr=0.02", "+tags.owner=api", home=home)
    assert done.returncode == 0, done.stderr
    (cli,) = [r for r in all_runs(client) if r.info.run_id not in runs]
    assert cli.data.params == recorded.data.params
    assert cli.data.metrics["final/train_loss"] == recorded.data.metrics["final/train_loss"]


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (["optimizer.lr=0"], "optimizer.lr=0.0 is not allowed: expected a learning rate > 0"),
        (["optimizer=nope"], "optimizer=nope: no such option; expected one of adam"),
        (["max_epochs=ten"], "max_epochs"),
    ],
)
def test_a_bad_value_raises_the_commands_own_line(home, client, train_in_process, overrides, line):
    with pytest.raises(trainlab.TrainError) as raised:
        trainlab.train(overrides)
    message = str(raised.value)
    assert line in message and "\n" not in message
    status, _, err = train_in_process(*overrides)
    assert status == 2 and err == f"trainlab-train: error: {message}\n"
    assert all(run.info.status != "RUNNING" for run in all_runs(client))
    assert trainlab.train([*SEED, "max_epochs=2"]).run_id  # the process goes on


def test_options_from_a_folder_of_ones_own(home, tmp_path):
    (tmp_path / "optimizer").mkdir()
    (tmp_path / "optimizer" / "fast_sgd.yaml").write_text(
        "defaults:\n  - /schema_optimizer_sgd@_here_\nlr: 0.05\n"
    )
    overrides = ["optimizer=fast_sgd", "tracking=none", "max_epochs=2", "print_every=0"]
    run = trainlab.train(overrides, config_dir=tmp_path)
    assert run.run_id is None and run.config["optimizer"]["lr"] == 0.05
    with pytest.raises(trainlab.TrainError, match="no such folder"):
        trainlab.train(SEED, config_dir=tmp_path / "missing")
