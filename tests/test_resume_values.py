"""`resume=<id>` with the run's own values re-stated (the command that started it, a preset or an
option that composes to the same values) is accepted; a real change is refused, naming every key
that differs with both values. In-process runs on a real store, composed by Hydra."""

from __future__ import annotations

from tests.helpers import all_runs, history

STARTED = ("optimizer=adam", "optimizer.lr=0.05", "tracking.plots=false", "print_every=0")


def test_resume_accepts_the_command_that_started_the_run(train_in_process, client):
    assert train_in_process(*STARTED, "max_epochs=3")[0] == 0
    (run,) = all_runs(client)
    run_id = run.info.run_id
    # The up arrow: the same command, resume=<id> added, trained longer.
    status, out, err = train_in_process(*STARTED, f"resume={run_id}", "max_epochs=5")
    assert status == 0, err
    assert f"Resuming run {run_id} at step 3" in out
    assert [s for s, _ in history(client, run_id)] == list(range(5))
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(all_runs(client)) == 1


def test_resume_accepts_a_preset_that_composes_to_the_recorded_values(train_in_process, client):
    # What experiment=seed_pipeline sets, given key by key (max_epochs and print_every may change).
    recorded = ("optimizer.lr=0.01", "experiment_name=seed_pipeline", "tracking.plots=false")
    assert train_in_process(*recorded, "max_epochs=2", "print_every=0")[0] == 0
    (run,) = all_runs(client)
    status, out, err = train_in_process(
        "experiment=seed_pipeline", "tracking.plots=false", f"resume={run.info.run_id}",
        "max_epochs=4", "optimizer=sgd",
    )  # fmt: skip
    assert status == 0, err
    assert f"Resuming run {run.info.run_id} at step 2" in out
    assert [s for s, _ in history(client, run.info.run_id)] == list(range(4))


def test_resume_refuses_real_changes_naming_each_with_both_values(train_in_process, client):
    assert train_in_process(*STARTED, "max_epochs=2")[0] == 0
    (run,) = all_runs(client)
    resume = f"resume={run.info.run_id}"
    status, _, err = train_in_process(*STARTED, resume, "optimizer.lr=0.5", "loss=huber")
    assert status == 2 and err.count("\n") == 1 and err.startswith("trainlab-train: error: ")
    assert "optimizer.lr (0.05 recorded, 0.5 given)" in err
    assert "loss._target_ ('torch.nn.MSELoss' recorded, 'torch.nn.HuberLoss' given)" in err
    assert "cannot change when resuming" in err and "expected the run's own values" in err
    # A preset whose values are not the run's: every key it changes is named, once.
    status, _, err = train_in_process(resume, "experiment=seed_pipeline")
    assert status == 2
    assert "optimizer._target_ ('torch.optim.Adam' recorded, 'torch.optim.SGD' given)" in err
    assert "optimizer.lr (0.05 recorded, 0.01 given)" in err
    assert err.count("optimizer.lr") == 1 and "max_epochs" not in err.split("expected")[0]
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
