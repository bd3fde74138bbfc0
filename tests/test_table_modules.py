"""The built-in table sources are LightningDataModules built by `data._target_`: usable under a
plain `Trainer.fit`, the same rows trainlab's engines train on, and a source of one's own is a
schema plus a class."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities.model_helpers import is_overridden

from trainlab.config.data import DataConfig, IrisDataConfig, SeedDataConfig, SyntheticDataConfig
from trainlab.data.arrays import RawData
from trainlab.data.sources import CsvSource, SeedSource, load_dataset
from trainlab.data.table_module import TableDataModule
from trainlab.errors import ConfigError


def built(cfg: DataConfig, seed: int = 0, task: str = "regression") -> TableDataModule:
    module = instantiate(dataclasses.asdict(cfg), seed=seed, task=task, _convert_="all")
    assert isinstance(module, TableDataModule) and isinstance(module, L.LightningDataModule)
    return module


def test_every_built_in_table_is_the_datamodule_its_target_names():
    for cfg, task in ((SeedDataConfig(), "regression"), (IrisDataConfig(), "classification")):
        module = built(cfg, seed=3, task=task)
        module.setup("fit")
        loaded = load_dataset(cfg, seed=3, task=task)
        assert torch.equal(module.dataset.x_train, loaded.x_train)
        assert torch.equal(module.dataset.y_train, loaded.y_train)
        assert module.dataset.lineage == loaded.lineage


def test_a_table_datamodule_serves_its_splits_to_a_plain_trainer():
    cfg = SyntheticDataConfig(n_samples=60, n_features=3, val_split=0.2, test_split=0.1)
    module = built(cfg, seed=1)
    module.setup("fit")
    batches = list(module.train_dataloader())
    assert sum(len(x) for x, _ in batches) == len(module.dataset.x_train) == 42
    (x_val, y_val), *_ = list(module.val_dataloader())
    assert torch.equal(x_val, module.dataset.x_val) and y_val.shape == (12, 1)
    assert sum(len(x) for x, _ in module.test_dataloader()) == 6

    class Fit(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(3, 1, dtype=torch.float64)

        def training_step(self, batch, _index):
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(Fit(), datamodule=module)
    assert trainer.global_step == 2  # one full batch per epoch


def test_without_a_validation_split_there_is_no_validation_loader():
    module = built(SeedDataConfig())
    assert not is_overridden("val_dataloader", module, L.LightningDataModule)


def test_a_source_of_one_s_own_is_a_schema_and_a_class():
    """What the docs show: a schema with `_target_`, a TableDataModule giving arrays()."""
    cfg = SquaresConfig(n=12, val_split=0.25)
    data = load_dataset(cfg, seed=0)
    assert data.feature_names == ["x"] and len(data.x_train) == 9 and len(data.x_val) == 3
    assert torch.allclose(data.x_train**2, data.y_train)
    assert data.lineage[0].name == "squares" and data.lineage[0].source_type == "code"


def test_a_table_s_bad_batch_size_is_one_line_from_the_datamodule():
    with pytest.raises(ConfigError, match=r"data\.batch_size=9 is larger than the 4 training rows"):
        SeedSource(x=[1, 2, 3, 4], y=[2, 4, 6, 8], batch_size=9).setup("fit")


class Squares(TableDataModule):
    def __init__(self, *, n: int, **table) -> None:
        super().__init__(**table)
        self.n = n

    def arrays(self) -> RawData:
        x = np.arange(self.n, dtype=np.float64).reshape(-1, 1)
        return RawData(x=x, y=x**2, feature_names=["x"], target_names=["y"])


@dataclass
class SquaresConfig(DataConfig):
    _target_: str = f"{__name__}.Squares"
    name: str = "squares"
    n: int = 10


def test_a_file_source_on_its_own_reads_splits_and_batches(tmp_path):
    """The docs' example: CsvSource built by hand, no schema, no trainlab run."""
    path = tmp_path / "houses.csv"
    path.write_text("size,price\n" + "".join(f"{i},{2 * i}\n" for i in range(10)))
    data = CsvSource(path=str(path), target="price", val_split=0.2, batch_size=4, seed=0)
    data.setup("fit")
    assert [len(x) for x, _ in data.train_dataloader()] == [4, 4]
    assert data.dataset.feature_names == ["size"] and len(data.dataset.x_val) == 2
    assert torch.equal(data.dataset.y_train, 2 * data.dataset.x_train)
    assert data.dataset.lineage[0].source == str(path) and data.dataset.lineage[0].rows == 8
