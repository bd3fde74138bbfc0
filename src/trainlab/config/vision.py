"""Schemas of the image options: `data=images` (a folder per class), `data=digits` and
`model=cnn`. Their `_target_`s are the classes of data/images.py and models/cnn.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import MISSING

from trainlab.config.data import DataConfig, as_yaml
from trainlab.config.models import ModelConfig
from trainlab.errors import require
from trainlab.paths import resolve_user_path

IMAGE_CHANNELS = (1, 3)
# The keys of the data schemas that apply to a table's rows, not to images, at their defaults.
TABLE_ONLY: dict[str, Any] = {"standardize": False, "x_test": None}


@dataclass
class ImageDataConfig(DataConfig):
    """What the image options share: the datamodule `_target_` names decodes the images into
    memory, splits and batches them. They are not tables: `data.standardize` and `data.x_test`
    do not apply (pixels are scaled to [0, 1]; `trainlab-predict --image` predicts files)."""

    MAKES_DATAMODULE: ClassVar[bool] = True
    NOT_APPLICABLE: ClassVar[tuple[str, ...]] = tuple(TABLE_ONLY)
    batch_size: int | None = 64  # None: the whole training set in one batch

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, default in TABLE_ONLY.items():
            value = getattr(self, key)
            require(
                value == default,
                f"data.{key}",
                value,
                f"data.{key}={as_yaml(default)} with data={self.name}: it applies to tables",
            )


@dataclass
class ImagesDataConfig(ImageDataConfig):
    """A folder with one subfolder of images per class (torchvision's ImageFolder layout):
    `data=images data.path=~/photos`. PNG, JPEG (and the other formats Pillow reads) of any
    size and mode, converted to `channels` and resized to `image_size`; the class names are the
    subfolders' names, sorted."""

    _target_: str = "trainlab.data.images.ImageFolderDataModule"
    name: str = "images"
    # Absolute once checked: a relative path is taken from the folder the command runs in.
    path: str = MISSING
    image_size: Any = 32  # one side (square images) or [height, width], in pixels
    channels: int = 3  # 1: gray, 3: RGB

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(str(self.path).strip()), "data.path", self.path, "a folder of class folders")
        self.path = str(resolve_user_path(self.path))
        size = self.image_size
        sides = [size] if isinstance(size, int) else list(size) if isinstance(size, list) else []
        require(
            len(sides) in (1, 2) and all(type(s) is int and s > 0 for s in sides),
            "data.image_size",
            size,
            "an integer > 0 (square images) or [height, width]",
        )
        require(
            self.channels in IMAGE_CHANNELS, "data.channels", self.channels, "1 (gray) or 3 (RGB)"
        )


@dataclass
class DigitsDataConfig(ImageDataConfig):
    """scikit-learn's 1,797 handwritten digits, shipped inside scikit-learn: 1x8x8 images in
    [0, 1] (from 0..16), classes '0'..'9'."""

    _target_: str = "trainlab.data.images.DigitsDataModule"
    name: str = "digits"


@dataclass
class CNNConfig(ModelConfig):
    """Conv (kernel_size, same padding) -> BatchNorm -> ReLU -> MaxPool(2) per entry of
    `channels`, then a global average pool, dropout and a Linear out. Built with `in_channels`
    (the images' C, from the data's first batch) and `out_features` (one per class)."""

    _target_: str = "trainlab.models.cnn.CNN"
    channels: list[int] = field(default_factory=lambda: [16, 32])  # output channels per block
    dropout: float = 0.0  # before the last Linear
    kernel_size: int = 3

    def __post_init__(self) -> None:
        ok = bool(self.channels) and all(width > 0 for width in self.channels)
        require(ok, "model.channels", self.channels, "a list of channel counts > 0, e.g. [16,32]")
        require(0 <= self.dropout < 1, "model.dropout", self.dropout, "0 <= x < 1")
        odd = self.kernel_size > 0 and self.kernel_size % 2 == 1
        require(odd, "model.kernel_size", self.kernel_size, "an odd integer > 0 (3, 5 ...)")
