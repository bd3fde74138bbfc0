"""Data sources, splits, standardization, labels and the in-memory batcher (the files: tests/
test_data_files.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sklearn.datasets
import torch

from trainlab.config.checks import parse_x_test
from trainlab.config.data import (
    BreastCancerDataConfig,
    CsvDataConfig,
    DiabetesDataConfig,
    IrisDataConfig,
    SeedDataConfig,
    SyntheticDataConfig,
    WineDataConfig,
)
from trainlab.data.batches import TensorBatches
from trainlab.data.file_checks import check_source
from trainlab.data.sources import SyntheticSource, load_dataset
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


# ----------------------------------------------------------------------------- the splits
def test_validation_rows_are_the_seeded_permutation_s_first_without_a_test_split():
    """Runs recorded before test splits must get the same rows when rerun."""
    cfg = SyntheticDataConfig(n_samples=40, n_features=2, val_split=0.25)
    fields = {k: v for k, v in vars(cfg).items() if k != "_target_"}
    raw = SyntheticSource(**fields).arrays()
    data = load_dataset(cfg, seed=5)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(5))
    assert torch.equal(data.x_val, torch.from_numpy(raw.x)[order[:10]])
    assert torch.equal(data.x_train, torch.from_numpy(raw.x)[order[10:]])
    assert data.x_test is None and data.y_test is None
    unsplit = load_dataset(SyntheticDataConfig(n_samples=40, n_features=2), seed=5)
    assert torch.equal(unsplit.x_train, torch.from_numpy(raw.x))  # the source's order


def test_a_test_split_keeps_the_validation_rows_and_takes_rows_from_training_only():
    base = {"n_samples": 50, "n_features": 3}
    without = load_dataset(SyntheticDataConfig(**base, val_split=0.2), seed=1)
    data = load_dataset(SyntheticDataConfig(**base, val_split=0.2, test_split=0.3), seed=1)
    assert torch.equal(data.x_val, without.x_val) and torch.equal(data.y_val, without.y_val)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (25, 10, 15)
    assert len(data.y_test) == 15
    rows = [tuple(r) for part in (data.x_train, data.x_val, data.x_test) for r in part.tolist()]
    assert len(set(rows)) == 50  # disjoint, and together every row
    assert {tuple(r) for r in data.x_train.tolist()} < {tuple(r) for r in without.x_train.tolist()}
    alone = load_dataset(SyntheticDataConfig(**base, test_split=0.2), seed=1)
    assert alone.x_val is None and (len(alone.x_train), len(alone.x_test)) == (40, 10)


def test_standardization_is_fitted_on_the_training_rows_and_applied_to_the_others():
    cfg = SyntheticDataConfig(n_samples=60, n_features=3, val_split=0.2, test_split=0.2)
    raw = load_dataset(cfg, seed=2)
    scaled = load_dataset(SyntheticDataConfig(**{**vars(cfg), "standardize": True}), seed=2)
    assert torch.allclose(scaled.x_mean, raw.x_train.mean(0))
    assert torch.allclose(scaled.x_std, raw.x_train.std(0, unbiased=False))
    for part in ("x_val", "x_test"):
        expected = (getattr(raw, part) - raw.x_train.mean(0)) / raw.x_train.std(0, unbiased=False)
        assert torch.allclose(getattr(scaled, part), expected)
    assert not torch.allclose(scaled.x_test.mean(0), torch.zeros(3, dtype=torch.float64))


def test_each_split_needs_a_row():
    with pytest.raises(ConfigError, match="leaves 4 training and 0 test rows of 4; expected"):
        load_dataset(SeedDataConfig(test_split=0.2), seed=0)
    with pytest.raises(ConfigError, match="leave 2 training, 1 validation and 0 test rows of 3"):
        load_dataset(SeedDataConfig(x=[1, 2, 3], y=[2, 4, 6], val_split=0.34, test_split=0.2), 0)
    with pytest.raises(ConfigError, match=r"data.val_split \+ data.test_split < 1"):
        SeedDataConfig(val_split=0.6, test_split=0.4)
    with pytest.raises(ConfigError, match=re.escape("data.test_split=1.0 is not allowed")):
        SeedDataConfig(test_split=1.0)


def test_every_split_is_in_the_lineage():
    data = load_dataset(SyntheticDataConfig(n_samples=20, val_split=0.25, test_split=0.25), 0)
    assert [(r.context, r.rows) for r in data.lineage] == [
        ("training", 10),
        ("validation", 5),
        ("test", 5),
    ]
    assert len({r.digest for r in data.lineage}) == 3


# ------------------------------------------------------------------- labels and their classes
def test_synthetic_regression_rows_are_what_they_were_before_classes():
    """Y = X W^T + b + noise from data_seed, drawn in this order, as recorded runs had them."""
    cfg = SyntheticDataConfig(n_samples=30, n_features=2, n_targets=2, noise=0.3, bias=1.5)
    data = load_dataset(cfg, seed=0)
    rng = np.random.default_rng(cfg.data_seed)
    weights = rng.normal(size=(2, 2))
    x = rng.normal(size=(30, 2))
    y = x @ weights.T + 1.5 + 0.3 * rng.normal(size=(30, 2))
    assert torch.equal(data.x_train, torch.from_numpy(x))
    assert torch.equal(data.y_train, torch.from_numpy(y))
    assert data.classes == () and not data.is_classification


def test_synthetic_classes_follow_a_noisy_linear_rule():
    cfg = SyntheticDataConfig(n_samples=2000, n_features=4, n_classes=3, noise=0.1)
    data = load_dataset(cfg, seed=0, task="classification")
    assert data.classes == ("0", "1", "2") and data.n_classes == 3 and data.n_targets == 1
    assert data.y_train.dtype == torch.int64 and data.y_train.shape == (2000,)
    weights = np.random.default_rng(cfg.data_seed).normal(size=(3, 4))
    rule = (data.x_train.numpy() @ weights.T).argmax(axis=1)
    agreement = (rule == data.y_train.numpy()).mean()
    assert 0.9 < agreement < 1.0  # the rule, blurred by the noise
    assert set(data.y_train.tolist()) == {0, 1, 2}


def test_casting_leaves_class_indices_alone():
    cfg = SyntheticDataConfig(n_samples=40, n_classes=2, val_split=0.25, test_split=0.25)
    data = load_dataset(cfg, seed=0, task="classification").cast(torch.float32)
    assert data.x_train.dtype == data.x_test.dtype == torch.float32
    assert data.y_train.dtype == data.y_val.dtype == data.y_test.dtype == torch.int64


@pytest.mark.parametrize(
    ("schema", "loader", "shape"),
    [
        (IrisDataConfig, "load_iris", (150, 4)),
        (WineDataConfig, "load_wine", (178, 13)),
        (BreastCancerDataConfig, "load_breast_cancer", (569, 30)),
    ],
)
def test_scikit_learn_sets_keep_their_rows_and_class_order(schema, loader, shape):
    bunch = getattr(sklearn.datasets, loader)()
    data = load_dataset(schema(val_split=0.0, standardize=False), 0, "classification")
    assert tuple(data.x_train.shape) == shape
    assert data.classes == tuple(bunch.target_names)
    assert data.feature_names == list(bunch.feature_names)
    assert torch.equal(data.y_train, torch.from_numpy(bunch.target).long())
    assert np.array_equal(data.x_train.numpy(), bunch.data)


def test_breast_cancer_class_zero_is_malignant():
    data = load_dataset(BreastCancerDataConfig(), 0, "classification")
    assert data.classes == ("malignant", "benign")
    assert data.x_val.shape == (113, 30)  # 20% held out by default


@pytest.mark.parametrize(
    ("cfg", "task", "message"),
    [
        (IrisDataConfig(), "regression", "data=iris holds class labels and a regression loss"),
        (DiabetesDataConfig(), "classification", "data=diabetes has a numeric target"),
        (SeedDataConfig(), "classification", "data=seed has a numeric target"),
        (SyntheticDataConfig(), "classification", "expected data.n_classes=K (K >= 2)"),
        (SyntheticDataConfig(n_classes=2), "regression", "data=synthetic holds class labels"),
    ],
)
def test_a_target_that_does_not_suit_the_loss_is_one_line(cfg, task, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_source(cfg, task)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_dataset(cfg, 0, task)


def test_a_synthetic_set_of_one_class_is_refused():
    with pytest.raises(ConfigError, match=r"holds one class \('\d'\) in all 1 rows; expected"):
        load_dataset(SyntheticDataConfig(n_samples=1, n_classes=2), 0, "classification")


def test_class_options_are_checked():
    with pytest.raises(ConfigError, match=re.escape("data.n_classes=1 is not allowed")):
        SyntheticDataConfig(n_classes=1)
    with pytest.raises(ConfigError, match=re.escape("data.n_targets=2 is not allowed")):
        SyntheticDataConfig(n_classes=3, n_targets=2)
    with pytest.raises(ConfigError, match=r"data\.classes=.* expected at least two distinct"):
        CsvDataConfig(path="x.csv", target="y", classes=["a", "a"])
