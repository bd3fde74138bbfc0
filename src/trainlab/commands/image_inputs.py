"""`trainlab-predict RUN --image FILE [--image FILE ...]`: image files as the inputs a model
trained on images takes.

The model's own signature says what it takes: a tensor of shape (-1, C, H, W). Each file is
decoded as the run's datamodule decoded its images (data/images.py's `load_image`: Pillow,
converted to gray or RGB by C, resized to (H, W), scaled to [0, 1]), so nothing else of the run
is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainlab.data.images import load_image
from trainlab.errors import ConfigError


class ImageInputError(ValueError):
    """An image the model cannot take; the message is the one line said."""


def image_shape(model: Any) -> tuple[int, int, int]:
    """(C, H, W) of the images the model takes, from its signature."""
    spec = model.metadata.get_input_schema()
    shape = tuple(spec.inputs[0].shape) if spec is not None and spec.is_tensor_spec() else ()
    if len(shape) != 4 or shape[1] not in (1, 3):
        raise ImageInputError(
            f"--image: the model takes inputs of shape {shape or 'unknown'}; expected a model "
            "trained on images, (-1, channels, height, width) (predict its rows with --row)"
        )
    return int(shape[1]), int(shape[2]), int(shape[3])


def image_rows(model: Any, files: list[Path]) -> np.ndarray:
    """The files as one float32 batch (N, C, H, W), each as the run's images were decoded."""
    channels, height, width = image_shape(model)
    try:
        images = [load_image(path, (height, width), channels) for path in files]
    except ConfigError as err:
        raise ImageInputError(f"--image {err}") from None
    return torch.stack(images).numpy()
