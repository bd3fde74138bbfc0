"""The recorder's curves for the plots (recorder/plots.py): rows added a batch at a time keep
every `stride`-th point seen, thinned evenly once a curve holds MAX_POINTS."""

from __future__ import annotations

import numpy as np
import pytest

from trainlab.recorder import plots
from trainlab.recorder.plots import Curve, History
from trainlab.tracking.messages import Rows


@pytest.mark.parametrize("sizes", [[1] * 100, [7, 0, 93], [100], [16, 16, 16, 52], [33, 1, 66]])
def test_a_curve_keeps_every_stride_th_point_whatever_the_batches(monkeypatch, sizes):
    monkeypatch.setattr(plots, "MAX_POINTS", 16)
    curve, seen = Curve(), 0
    for size in sizes:
        steps = list(range(seen, seen + size))
        curve.extend(steps, [2.0 * s for s in steps])
        seen += size
    assert seen == curve.seen == 100
    assert curve.stride == 8  # 16 points reached at 16, 32 and 64 seen (strides 2, 4, 8)
    assert curve.steps == list(range(0, 100, 8))
    assert curve.values == [2.0 * s for s in range(0, 100, 8)]


def test_history_draws_the_losses_and_the_parameters_of_wide_rows():
    rows = Rows(
        keys=("train/loss", "train/lr", "weight/0_0", "bias/0"),
        steps=np.arange(3, dtype=np.int64),
        times=np.zeros(3, dtype=np.int64),
        values=np.arange(12, dtype=float).reshape(3, 4),
    )
    history = History()
    history.add(rows)
    assert sorted(history.curves) == ["bias/0", "train/loss", "weight/0_0"]
    assert history.curves["weight/0_0"].values == [2.0, 6.0, 10.0]
    assert history.curves["train/loss"].steps == [0, 1, 2]
