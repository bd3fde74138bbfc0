"""The buffered metric sink and run lifecycle, against a real SQLite store."""

from __future__ import annotations

import contextlib

import pytest
import torch

from trainlab.tracking import flatten, open_run


def history(client, run_id, key):
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


@pytest.mark.parametrize("ending", ["normal", "exception", "interrupt"])
def test_sink_delivers_every_step_once_in_order(home, client, ending):
    uri = client.tracking_uri
    raised = {"normal": None, "exception": RuntimeError("boom"), "interrupt": KeyboardInterrupt()}[
        ending
    ]
    expectation = pytest.raises(type(raised)) if raised else contextlib.nullcontext()
    with expectation, open_run(uri, "sink", None, {}, max_seconds=60) as run:
        run.sink.max_metrics = 250  # several size-triggered flushes, and a partial tail
        for step in range(1234):
            run.sink.add(
                ["train/loss", "weight/0_0"], torch.tensor([step * 1.0, -step * 0.5]), step
            )
        if raised:
            raise raised
    (record,) = client.search_runs([client.get_experiment_by_name("sink").experiment_id])
    assert (
        record.info.status
        == {"normal": "FINISHED", "exception": "FAILED", "interrupt": "KILLED"}[ending]
    )
    assert history(client, record.info.run_id, "train/loss") == [(s, float(s)) for s in range(1234)]
    assert history(client, record.info.run_id, "weight/0_0") == [(s, -s * 0.5) for s in range(1234)]


def test_sink_mixes_rows_of_different_widths(home, client):
    with open_run(client.tracking_uri, "mixed", None, {}, max_seconds=60) as run:
        run.sink.add(["a", "b", "c"], torch.tensor([1.0, 2.0, 3.0]), 0)
        run.sink.add(["val/loss"], torch.tensor([4.0]), 0)
        run.sink.add(["x"], [5.0], 1)
    (record,) = client.search_runs([client.get_experiment_by_name("mixed").experiment_id])
    assert record.data.metrics == {"a": 1.0, "b": 2.0, "c": 3.0, "val/loss": 4.0, "x": 5.0}


def test_flatten_nested_config():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {
        "a.b": 1,
        "a.c.d": [1, 2],
        "e": None,
    }
