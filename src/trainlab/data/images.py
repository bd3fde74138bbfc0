"""`data=images` (a folder with one subfolder of images per class) and `data=digits`
(scikit-learn's 8x8 digits) as LightningDataModules.

Both hold small data sets: every image is decoded once, in `setup`, into one float32 tensor
(N, C, H, W) scaled to [0, 1], split and served as every built-in option's rows are
(data/in_memory.py). Pillow decodes; torchvision cannot be installed beside this machine's CPU
build of torch, and a folder per class needs none of it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from trainlab.data.in_memory import InMemoryDataModule
from trainlab.errors import ConfigError

# What torchvision's ImageFolder reads; Pillow decodes each of them.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
MODES = {1: "L", 3: "RGB"}
# Below this many files a thread pool costs more than it saves (Pillow decodes without the GIL).
POOL_FROM = 64


def image_size_of(image_size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) from `image_size`: one side for square images, or [H, W]."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(side, int) and side > 0 for side in size):
        raise ConfigError(
            f"image_size={image_size!r} is not allowed: expected an integer > 0 or [height, width]"
        )
    return size[0], size[1]


def decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """The image at `path` as uint8 pixels (H, W, C), in `channels` (1: gray, 3: RGB)."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; expected a PNG or JPEG image")
    height, width = size
    try:
        with Image.open(path) as opened:
            # A JPEG decodes straight at a reduced scale (never below the size asked for): a
            # photo of millions of pixels costs what a thumbnail does.
            opened.draft(MODES[channels], (max(size), max(size)))
            upright = ImageOps.exif_transpose(opened)  # photos keep their camera's rotation
            if upright.mode == "P":  # a palette's transparency is dropped as RGBA's is
                upright = upright.convert("RGBA")
            image = upright.convert(MODES[channels])
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        unknown = isinstance(err, UnidentifiedImageError)  # its text repeats the path
        reason = "not a format it knows" if unknown else str(err) or type(err).__name__
        raise ConfigError(
            f"{path} is not an image Pillow can read ({reason}); expected PNG or JPEG"
        ) from None
    return pixels.reshape(height, width, channels)


def as_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 pixels (..., H, W, C) as float32 (..., C, H, W) in [0, 1]."""
    return torch.from_numpy(pixels).movedim(-1, -3).float().div_(255).contiguous()


def load_image(path: Path, image_size: int | Sequence[int], channels: int) -> torch.Tensor:
    """One image file as the datamodules give it: float32 (C, H, W) in [0, 1], resized to
    `image_size` (one side or (H, W)), converted to gray (`channels=1`) or RGB (3). What
    `trainlab-predict --image` feeds a run's model, with the run's recorded data.image_size and
    data.channels. A file Pillow cannot read is a ConfigError naming it."""
    if channels not in MODES:
        raise ConfigError(f"channels={channels!r} is not allowed: expected 1 (gray) or 3 (RGB)")
    path = Path(path).expanduser().resolve()
    return as_tensor(decode(path, image_size_of(image_size), channels).copy())


class InMemoryImages(InMemoryDataModule):
    """Images decoded once into one tensor (data/in_memory.py says how they are split and
    served). A subclass says where the images come from (`load`: float32 (N, C, H, W) in
    [0, 1], and int64 class indices (N,)), its `classes`, `image_size` and `channels`."""

    image_size: tuple[int, int]
    channels: int
    classes: tuple[str, ...]


class ImageFolderDataModule(InMemoryImages):
    """`data=images data.path=FOLDER`: one subfolder per class, named as the class (the layout of
    torchvision's ImageFolder); the classes in sorted order of their names. Files with an image
    extension anywhere inside a class folder are its images; other files, hidden files and
    folders (`.DS_Store`, `._photo.jpg`) and files beside the class folders are not read.
    Each image is converted to gray (`channels=1`) or RGB (3) and resized to `image_size` (one
    side, or [H, W]), whatever its own size and mode."""

    def __init__(
        self,
        path: str,
        image_size: int | Sequence[int] = 32,
        channels: int = 3,
        val_split: float = 0.0,
        test_split: float = 0.0,
        batch_size: int | None = 64,
        shuffle: bool = True,
        seed: int = 0,
        name: str = "images",
    ) -> None:
        super().__init__(val_split, test_split, batch_size, shuffle, seed)
        if channels not in MODES:
            raise ConfigError(
                f"data.channels={channels!r} is not allowed: expected 1 (gray) or 3 (RGB)"
            )
        self.path, self.name = Path(path).expanduser().resolve(), name
        self.image_size, self.channels = image_size_of(image_size), channels
        self.listing: tuple[tuple[str, ...], list[Path], list[int]] | None = None

    @property
    def classes(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.files()[0]

    def files(self) -> tuple[tuple[str, ...], list[Path], list[int]]:
        """The class names, every image file and its class index (listed once)."""
        if self.listing is None:
            self.listing = list_image_folder(self.path)
        return self.listing

    def load(self) -> tuple[torch.Tensor, torch.Tensor]:
        _, paths, labels = self.files()
        pixels = np.empty((len(paths), *self.image_size, self.channels), dtype=np.uint8)

        def read(index: int) -> None:
            pixels[index] = decode(paths[index], self.image_size, self.channels)

        if len(paths) < POOL_FROM:
            for index in range(len(paths)):
                read(index)
        else:
            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
                list(pool.map(read, range(len(paths))))  # the first unreadable file raises
        return as_tensor(pixels), torch.tensor(labels, dtype=torch.int64)


def list_image_folder(root: Path) -> tuple[tuple[str, ...], list[Path], list[int]]:
    """The class folders of `root` (sorted names), their image files and class indices; one
    line for what is not a folder of at least two classes of images."""
    where = f"data.path={str(root)!r}"
    layout = "one subfolder of images per class (the layout of torchvision's ImageFolder)"
    if not root.exists():
        raise ConfigError(f"{where}: no such folder; expected a folder with {layout}")
    if not root.is_dir():
        raise ConfigError(f"{where}: a file, not a folder; expected a folder with {layout}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        loose = any(is_image_file(p) for p in root.iterdir())
        found = "images but no class folders" if loose else "no class folders"
        raise ConfigError(f"{where}: the folder holds {found}; expected {layout}")
    if len(folders) < 2:
        raise ConfigError(
            f"{where}: the folder holds one class folder ({folders[0].name!r}); expected at "
            f"least two classes, {layout}"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for index, folder in enumerate(folders):
        images = sorted(
            p
            for p in folder.rglob("*")
            if is_image_file(p)
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )
        if not images:
            raise ConfigError(
                f"{where}: the class folder {folder.name!r} holds no image files "
                f"({', '.join(IMAGE_EXTENSIONS)}); expected at least one in each class folder"
            )
        paths += images
        labels += [index] * len(images)
    return tuple(folder.name for folder in folders), paths, labels


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


class DigitsDataModule(InMemoryImages):
    """`data=digits`: scikit-learn's 1,797 handwritten digits (shipped inside scikit-learn, no
    download), each 8x8 pixels of 0..16, as 1x8x8 float32 images in [0, 1]; classes '0'..'9'."""

    image_size = (8, 8)
    channels = 1
    classes = tuple(str(digit) for digit in range(10))

    def __init__(
        self,
        val_split: float = 0.0,
        test_split: float = 0.0,
        batch_size: int | None = 64,
        shuffle: bool = True,
        seed: int = 0,
        name: str = "digits",
    ) -> None:
        super().__init__(val_split, test_split, batch_size, shuffle, seed)
        self.name = name

    def load(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Only these runs pay for importing scikit-learn; its data ships inside it.
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
        return images.contiguous(), torch.from_numpy(digits.target.astype(np.int64))
