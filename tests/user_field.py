"""Code in the field's own shapes, as a user brings it (importable from the checkout's root as
`tests.user_field.<Class>`): a network and LightningModule shaped like lightning-hydra-template's
`SimpleDenseNet` and `MNISTLitModule` (4-D image inputs; the network, an optimizer partial and a
scheduler partial in `save_hyperparameters`), datamodules whose batches are images, dicts,
dataclasses, named tuples and token sequences, and modules that read them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, NamedTuple

import lightning as L
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset


class SimpleDenseNet(nn.Module):
    """The template's network: (batch, channels, width, height) in, class scores out."""

    def __init__(
        self,
        input_size: int = 64,
        lin1_size: int = 32,
        lin2_size: int = 32,
        output_size: int = 10,
    ) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(input_size, lin1_size),
            nn.BatchNorm1d(lin1_size),
            nn.ReLU(),
            nn.Linear(lin1_size, lin2_size),
            nn.BatchNorm1d(lin2_size),
            nn.ReLU(),
            nn.Linear(lin2_size, output_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_size, _channels, _width, _height = x.size()  # the template unpacks all four
        return self.model(x.view(batch_size, -1))


class DigitsLitModule(L.LightningModule):
    """The template's MNISTLitModule: net, optimizer and scheduler handed in; logs its own
    train/loss, train/acc, val/loss, val/acc and test/* (torchmetrics-free: plain tensors)."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: Any,
        scheduler: Any = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.net = net
        self.criterion = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def model_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self.forward(x)
        loss = self.criterion(logits, y)
        accuracy = (logits.argmax(dim=1) == y).float().mean()
        return loss, accuracy

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, accuracy = self.model_step(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", accuracy, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, accuracy = self.model_step(batch)
        self.log("val/loss", loss, on_step=False, on_epoch=True)
        self.log("val/acc", accuracy, on_step=False, on_epoch=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        loss, accuracy = self.model_step(batch)
        self.log("test/loss", loss, on_step=False, on_epoch=True)
        self.log("test/acc", accuracy, on_step=False, on_epoch=True)

    def configure_optimizers(self) -> Any:
        optimizer = self.hparams.optimizer(params=self.trainer.model.parameters())
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        scheduler = self.hparams.scheduler(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss", "interval": "epoch"},
        }


class DigitImages(L.LightningDataModule):
    """scikit-learn's 8x8 digits as (N, 1, 8, 8) float images and int64 labels."""

    def __init__(self, batch_size: int = 64, rows: int = 600) -> None:
        super().__init__()
        self.batch_size, self.rows = batch_size, rows

    def setup(self, stage: str) -> None:
        digits = load_digits()
        x = torch.tensor(digits.images[: self.rows], dtype=torch.float32).unsqueeze(1) / 16
        y = torch.tensor(digits.target[: self.rows], dtype=torch.int64)
        cut = len(x) * 5 // 6
        self.train_set = TensorDataset(x[:cut], y[:cut])
        self.val_set = TensorDataset(x[cut:], y[cut:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)


def regression_rows(rows: int = 128, features: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, features, generator=generator)
    y = x @ torch.arange(1.0, features + 1) + 0.5
    return x, y.unsqueeze(1)


class DictRows(Dataset):
    def __init__(self) -> None:
        self.x, self.y = regression_rows()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"features": self.x[index], "target": self.y[index]}


class DictBatches(L.LightningDataModule):
    """Batches of {"features": (N, 4), "target": (N, 1)}: the default collate's dicts."""

    def train_dataloader(self) -> DataLoader:
        return DataLoader(DictRows(), batch_size=16)


class DictRegressor(L.LightningModule):
    """Reads dict batches by name."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = nn.functional.mse_loss(self(batch["features"]), batch["target"])
        self.log("train/mse", loss, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


@dataclass
class Example:
    features: torch.Tensor
    target: torch.Tensor


class Pair(NamedTuple):
    features: torch.Tensor
    target: torch.Tensor


def collate_examples(items: list[tuple[torch.Tensor, torch.Tensor]]) -> Example:
    return Example(torch.stack([x for x, _ in items]), torch.stack([y for _, y in items]))


def collate_pairs(items: list[tuple[torch.Tensor, torch.Tensor]]) -> Pair:
    return Pair(torch.stack([x for x, _ in items]), torch.stack([y for _, y in items]))


class StructuredBatches(L.LightningDataModule):
    """Batches as dataclasses (`kind=dataclass`) or named tuples (`kind=namedtuple`)."""

    def __init__(self, kind: str = "dataclass") -> None:
        super().__init__()
        self.kind = kind

    def train_dataloader(self) -> DataLoader:
        x, y = regression_rows()
        collate = collate_examples if self.kind == "dataclass" else collate_pairs
        return DataLoader(list(zip(x, y, strict=True)), batch_size=32, collate_fn=collate)


class StructuredRegressor(L.LightningModule):
    """Reads a batch's `features` and `target` attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return nn.functional.mse_loss(self.layer(batch.features), batch.target)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Tokens(L.LightningDataModule):
    """Integer token sequences (N, T) and a label each: is token 3 in the sequence."""

    def __init__(self, vocabulary: int = 8, length: int = 6, rows: int = 256) -> None:
        super().__init__()
        self.vocabulary, self.length, self.rows = vocabulary, length, rows
        self.classes = ["absent", "present"]

    def setup(self, stage: str) -> None:
        generator = torch.Generator().manual_seed(1)
        tokens = torch.randint(0, self.vocabulary, (self.rows, self.length), generator=generator)
        labels = (tokens == 3).any(dim=1).long()
        cut = self.rows * 3 // 4
        self.train_set = TensorDataset(tokens[:cut], labels[:cut])
        self.val_set = TensorDataset(tokens[cut:], labels[cut:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=32)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=64)


class TokenClassifier(nn.Module):
    """Embedding -> GRU -> Linear: a plain nn.Module that trainlab's module trains."""

    def __init__(self, out_features: int, vocabulary: int = 8, width: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.gru = nn.GRU(width, width, batch_first=True)
        self.head = nn.Linear(width, out_features)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, hidden = self.gru(self.embed(tokens))
        return self.head(hidden[-1])


class Sequences(L.LightningDataModule):
    """Float sequences (N, T, F) with a regression target: the sum of the last step's features."""

    def setup(self, stage: str) -> None:
        generator = torch.Generator().manual_seed(2)
        x = torch.randn(192, 5, 3, generator=generator)
        self.train_set = TensorDataset(x, x[:, -1, :].sum(dim=1, keepdim=True))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=32)


class LastStep(nn.Module):
    """A GRU over (N, T, F) sequences: takes in_shape (T, F) from trainlab."""

    def __init__(self, in_shape: tuple[int, ...], out_features: int, width: int = 8) -> None:
        super().__init__()
        self.gru = nn.GRU(in_shape[-1], width, batch_first=True)
        self.head = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.gru(x)
        return self.head(output[:, -1])


class Stacked(nn.Module):
    """A network given its layer widths as a list (a YAML or command-line list)."""

    def __init__(self, in_features: int, out_features: int, widths: list[int]) -> None:
        super().__init__()
        if type(widths) is not list:
            raise TypeError(f"widths must be a list, got {type(widths).__name__}")
        sizes = [in_features, *widths, out_features]
        layers = [nn.Linear(a, b) for a, b in itertools.pairwise(sizes)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ValueBranching(nn.Module):
    """A linear model whose forward branches in Python on its inputs' values (`.item()`): torch.
    export cannot trace it (trainlab logs it as weights and config: models/weights.py)."""

    def __init__(self, in_features: int, out_features: int, clip: float = 1e6) -> None:
        super().__init__()
        self.lin = nn.Linear(in_features, out_features)
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.abs().max().item() > self.clip:
            x = x.clamp(-self.clip, self.clip)
        return self.lin(x)
