"""Data sources, split, standardization and the in-memory batcher."""

from __future__ import annotations

import pytest
import torch

from trainlab.config.checks import parse_x_test
from trainlab.config.data import SeedDataConfig, SyntheticDataConfig
from trainlab.data.batches import TensorBatches
from trainlab.data.sources import load_dataset
from trainlab.errors import ConfigError


def test_batcher_yields_every_row_once_per_epoch_and_repeats_with_seed():
    x = torch.arange(103, dtype=torch.float32).reshape(-1, 1)
    batches = TensorBatches(x, x * 2, batch_size=10, shuffle=True, seed=7)
    assert len(batches) == 11
    epochs = [torch.cat([bx for bx, _ in batches]).reshape(-1).tolist() for _ in range(2)]
    for seen in epochs:
        assert sorted(seen) == list(range(103))
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    again = TensorBatches(x, x * 2, batch_size=10, shuffle=True, seed=7)
    assert torch.cat([bx for bx, _ in again]).reshape(-1).tolist() == epochs[0]
    for bx, by in TensorBatches(x, x * 2, batch_size=10, shuffle=True, seed=1):
        assert torch.equal(by, bx * 2)  # rows stay paired


def test_synthetic_recovers_true_weights_shape_and_split():
    cfg = SyntheticDataConfig(
        n_samples=50, n_features=4, n_targets=2, val_split=0.2, standardize=True
    )
    data = load_dataset(cfg, seed=0)
    assert data.x_train.shape == (40, 4) and data.y_train.shape == (40, 2)
    assert data.x_val.shape == (10, 4)
    assert torch.allclose(data.x_train.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(
        data.x_train.std(0, unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-9
    )


def test_single_row_with_validation_split_is_refused():
    with pytest.raises(ConfigError, match="expected at least one of each"):
        load_dataset(SeedDataConfig(x=[1.0], y=[2.0], val_split=0.5), seed=0)


def test_x_test_rows():
    assert parse_x_test([5.0], 1) == [[5.0]]
    assert parse_x_test(5, None) == [[5.0]]
    assert parse_x_test([[1, 2], [3, 4]], 2) == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(ConfigError, match="has 3 values per row"):
        parse_x_test([1, 2, 3], 2)
    with pytest.raises(ConfigError, match="expected finite numbers"):
        parse_x_test([float("nan")], 1)
    with pytest.raises(ConfigError, match="rows of the same, non-zero length"):
        parse_x_test([[1, 2], [3]], 2)
