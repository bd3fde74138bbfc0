"""trainlab's classifier records its epoch metrics once per epoch, at the epoch's last step, from
every row the epoch trained on (and every validation row): torchmetrics' values over the epoch,
computed once at its end."""

from __future__ import annotations

from tests.helpers import history, store

IRIS = ("data=iris", "loss=cross_entropy", "model=mlp", "data.batch_size=30", "max_epochs=3",
        "print_every=0", "tracking.plots=false", "tracking.log_model=false")  # fmt: skip


def test_epoch_metrics_are_recorded_once_per_epoch_at_its_last_step(home, train_in_process):
    status, _, err = train_in_process(*IRIS)
    assert status == 0, err
    client = store(home)
    (run,) = client.search_runs(["0", "1"])
    steps_per_epoch = 4  # 120 training rows (val_split 0.2) in batches of 30
    ends = [steps_per_epoch * (e + 1) - 1 for e in range(3)]
    for key in ("train/accuracy", "train/f1", "train/roc_auc", "val/accuracy", "val/f1"):
        points = history(client, run.info.run_id, key)
        assert [step for step, _ in points] == ends, key
        assert all(0.0 <= value <= 1.0 for _, value in points), key
