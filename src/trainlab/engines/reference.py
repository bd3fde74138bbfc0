"""The least-squares reference: the smallest training MSE any linear model can reach.

A linear model trained on the MSE has a closed-form optimum; trainlab logs it as `ols/loss` and
every step's distance to it as `ols/gap`, for every engine.
"""

from __future__ import annotations

import torch

from trainlab.config.schema import TrainConfig
from trainlab.config.training import MSELossConfig
from trainlab.data.dataset import Dataset

# Above this many training values (80 MB in float64) the lstsq reference is skipped.
OLS_MAX_ELEMENTS = 10_000_000


def least_squares_loss(data: Dataset, bias: bool) -> float:
    """The optimum of the training MSE over linear models: lstsq on the training rows, float64."""
    x, y = data.x_train.double(), data.y_train.double()
    if bias:
        x = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(x, y).solution
    return torch.mean((x @ solution - y) ** 2).item()


def ols_reference(settings: TrainConfig, data: Dataset) -> float | None:
    """`ols/loss` for runs that minimise the MSE of a linear model (None otherwise)."""
    if not isinstance(settings.loss, MSELossConfig):
        return None
    if data.x_train.numel() > OLS_MAX_ELEMENTS:
        return None
    return least_squares_loss(data, settings.model.bias)
