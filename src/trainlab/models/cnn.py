"""`model=cnn`: a small convolutional network for images (N, C, H, W) of any size and channels.

Its input channels come from the data (the first batch's C; the run passes them as
`in_channels`), its outputs from the loss and the classes (`out_features`), as `model=mlp` gets
`in_features` and `out_features`. Pooling uses `ceil_mode`, so each block halves a side while it
is above one pixel and leaves a one-pixel side as it is: no branch on the input's shape, so any
image size >= 1x1 goes through, and `torch.export` (MLflow's pt2 format) traces one graph.
"""

from __future__ import annotations

import torch
from torch import nn


class CNN(nn.Module):
    """Per entry of `channels`: Conv2d (3x3, same padding) -> BatchNorm2d -> ReLU -> MaxPool2d(2);
    then an adaptive average pool to 1x1, dropout (when > 0) and a Linear to `out_features`."""

    def __init__(
        self,
        in_channels: int,
        out_features: int,
        channels: list[int] | tuple[int, ...] = (16, 32),
        dropout: float = 0.0,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = in_channels
        for out in channels:
            blocks += [
                # No bias: the BatchNorm right after it has its own shift.
                nn.Conv2d(width, out, kernel_size, padding=kernel_size // 2, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            width = out
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.head(self.dropout(x))
