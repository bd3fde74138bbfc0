"""Images: a folder per class decoded by Pillow, scikit-learn's digits, the CNN, their options.

The image folders are made here with Pillow: PNG and JPEG, gray, color, palette and RGBA, of
different sizes; every image is told apart by its own brightness, so that a split can be checked
row by row.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities.model_helpers import is_overridden
from PIL import Image
from torch import nn

from trainlab.config.checks import check_config
from trainlab.config.vision import TABLE_ONLY, CNNConfig, DigitsDataConfig, ImagesDataConfig
from trainlab.data.images import DigitsDataModule, ImageFolderDataModule, load_image
from trainlab.errors import ConfigError
from trainlab.models.cnn import CNN

CLASSES = ("cat", "dog", "owl")
SIZES = [(12, 10), (40, 30), (7, 7), (64, 48), (9, 21), (16, 16)]  # (width, height)
MODES = ["RGB", "L", "RGBA", "P", "RGB", "L"]


def make_folder(root: Path, per_class: int = 6) -> Path:
    """CLASSES subfolders of `per_class` images each, alternately PNG and JPEG, each of one flat
    gray level that no other image has (JPEG keeps a flat image's level within a step or two)."""
    level = 10
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size, mode = SIZES[i % len(SIZES)], MODES[i % len(MODES)]
            image = Image.new("RGB", size, (level, level, level)).convert(mode)
            suffix = ".png" if i % 2 == 0 or mode in ("RGBA", "P") else ".jpg"
            image.save(root / name / f"{i:02d}{suffix}")
            level += 12
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "photos")


def all_rows(module: ImageFolderDataModule | DigitsDataModule, hook: str):
    batches = list(getattr(module, hook)())
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def levels(x: torch.Tensor) -> list[int]:
    """Each image's gray level (0..255): which image of the folder it is."""
    return [round(float(v)) for v in x.mean(dim=(1, 2, 3)) * 255]


def test_a_folder_of_images_is_batches_of_one_size_with_its_classes(folder):
    module = ImageFolderDataModule(
        str(folder), image_size=[12, 20], channels=3, val_split=0.2, test_split=0.2, batch_size=4
    )
    module.setup("fit")
    assert module.classes == CLASSES
    assert (module.image_size, module.channels) == ((12, 20), 3)
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (4, 3, 12, 20) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.shape == (4,)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    train, val, test = (
        all_rows(module, h) for h in ("train_dataloader", "val_dataloader", "test_dataloader")
    )
    assert [len(part[0]) for part in (train, val, test)] == [12, 3, 3]  # 18 images
    # Every image once, in one split, with its class (images 0-5 are cats, 6-11 dogs ...).
    seen = {}
    for x_part, y_part in (train, val, test):
        for level, label in zip(levels(x_part), y_part.tolist(), strict=True):
            seen[level] = label
    expected = {10 + 12 * i: i // 6 for i in range(18)}
    assert len(seen) == 18
    assert all(
        abs(level - near) <= 3 for level, near in zip(sorted(seen), sorted(expected), strict=True)
    )
    assert [seen[k] for k in sorted(seen)] == [expected[k] for k in sorted(expected)]


def test_the_split_is_the_same_for_a_seed_and_another_for_another(folder):
    def val_levels(seed: int) -> list[int]:
        module = ImageFolderDataModule(str(folder), image_size=8, val_split=0.3, seed=seed)
        return levels(all_rows(module, "val_dataloader")[0])

    assert val_levels(1) == val_levels(1)
    assert val_levels(1) != val_levels(2)


def test_gray_images_have_one_channel_and_one_side_makes_squares(folder):
    module = ImageFolderDataModule(str(folder), image_size=5, channels=1, batch_size=None)
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (18, 1, 5, 5) and len(y) == 18
    # Without splits the rows keep the folder's order: cats, dogs, owls.
    assert y.tolist() == [0] * 6 + [1] * 6 + [2] * 6


def test_without_a_split_there_is_no_loader_for_it(folder):
    """Lightning runs no validation (or test) for a hook the datamodule does not have."""
    plain = ImageFolderDataModule(str(folder), image_size=4)
    validated = ImageFolderDataModule(str(folder), image_size=4, val_split=0.2)
    assert not is_overridden("val_dataloader", plain)
    assert not is_overridden("test_dataloader", plain)
    assert is_overridden("val_dataloader", validated)
    assert not is_overridden("test_dataloader", validated)
    assert is_overridden("test_dataloader", DigitsDataModule(test_split=0.1))


def test_load_image_gives_what_the_datamodule_gives(folder, tmp_path):
    red = tmp_path / "red.jpg"
    Image.new("RGB", (30, 20), (255, 0, 0)).save(red, quality=100)
    image = load_image(red, (4, 6), 3)
    assert image.shape == (3, 4, 6) and image.dtype == torch.float32
    assert image[0].min() > 0.97 and image[1:].max() < 0.03
    assert load_image(red, 3, 1).shape == (1, 3, 3)
    module = ImageFolderDataModule(str(folder), image_size=[7, 9], channels=3, batch_size=None)
    x, _ = next(iter(module.train_dataloader()))
    first = sorted((folder / "cat").iterdir())[0]
    assert torch.equal(load_image(first, (7, 9), 3), x[0])


@pytest.mark.parametrize("name", ["notes.png", "broken.jpg"])
def test_a_file_that_is_not_an_image_is_one_line_naming_it(folder, name):
    bad = folder / "dog" / name
    if name == "broken.jpg":  # a JPEG cut short: its header reads, its pixels do not
        Image.new("RGB", (64, 64), (1, 2, 3)).save(bad)
        bad.write_bytes(bad.read_bytes()[:200])
    else:
        bad.write_text("not pixels")
    module = ImageFolderDataModule(str(folder), image_size=8)
    with pytest.raises(ConfigError) as err:
        module.setup("fit")
    message = str(err.value)
    assert "\n" not in message and str(bad) in message
    assert "is not an image Pillow can read" in message and message.endswith("expected PNG or JPEG")
    with pytest.raises(ConfigError, match="is not an image Pillow can read"):
        load_image(bad, 8, 3)


def test_other_files_hidden_files_and_loose_files_are_not_read(folder):
    (folder / "cat" / "notes.txt").write_text("not an image")
    (folder / "cat" / "._00.png").write_text("macOS resource fork")  # not an image either
    (folder / ".thumbnails").mkdir()
    Image.new("RGB", (4, 4)).save(folder / "loose.png")
    module = ImageFolderDataModule(str(folder), image_size=4, batch_size=None)
    x, _ = next(iter(module.train_dataloader()))
    assert module.classes == CLASSES and len(x) == 18


def one_class(root: Path) -> Path:
    make_folder(root)
    for name in CLASSES[1:]:
        for file in (root / name).iterdir():
            file.unlink()
        (root / name).rmdir()
    return root


def loose_images(root: Path) -> Path:
    root.mkdir()
    Image.new("RGB", (4, 4)).save(root / "a.png")
    return root


def empty_class(root: Path) -> Path:
    make_folder(root)
    for file in (root / "dog").iterdir():
        file.unlink()
    (root / "dog" / "readme.txt").write_text("no images here")
    return root


@pytest.mark.parametrize(
    "make,message",
    [
        (
            lambda root: root,
            "no such folder; expected a folder with one subfolder of images per class",
        ),
        (lambda root: (root.write_text("x"), root)[1], "a file, not a folder"),
        (lambda root: (root.mkdir(), root)[1], "the folder holds no class folders"),
        (loose_images, "the folder holds images but no class folders"),
        (one_class, "the folder holds one class folder ('cat'); expected at least two classes"),
        (empty_class, "the class folder 'dog' holds no image files"),
    ],
    ids=["missing", "a file", "empty", "no class folders", "one class", "a class without images"],
)
def test_a_folder_that_is_not_one_of_classes_is_one_line(tmp_path, make, message):
    root = make(tmp_path / "data")
    module = ImageFolderDataModule(str(root), image_size=4)
    with pytest.raises(ConfigError) as err:
        module.setup("fit")
    assert "\n" not in str(err.value) and message in str(err.value)
    assert str(err.value).startswith(f"data.path={str(root)!r}: ")


def test_a_split_with_no_image_in_it_is_one_line(folder):
    module = ImageFolderDataModule(str(folder), image_size=4, val_split=0.01)
    with pytest.raises(ConfigError, match=r"data.val_split=0.01 leaves 18 training and 0 valid"):
        module.setup("fit")


def test_hundreds_of_small_images_decode_well_under_a_second(tmp_path):
    root = tmp_path / "many"
    for label in range(2):
        (root / str(label)).mkdir(parents=True)
        for i in range(150):
            image = Image.new("RGB", (32, 32), (i, label * 100, 7))
            image.save(root / str(label) / f"{i}.{'png' if i % 2 else 'jpg'}")
    module = ImageFolderDataModule(str(root), image_size=28)
    start = time.perf_counter()
    module.setup("fit")
    elapsed = time.perf_counter() - start
    assert len(module.splits["train"][0]) == 300
    assert elapsed < 0.5, f"300 images took {elapsed:.2f} s"


def test_digits_are_one_channel_8x8_images_of_ten_classes():
    module = DigitsDataModule(val_split=0.2, test_split=0.1, batch_size=64, seed=3)
    assert (module.image_size, module.channels) == ((8, 8), 1)
    assert module.classes == tuple("0123456789")
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (64, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    sizes = [
        len(all_rows(module, h)[0])
        for h in ("train_dataloader", "val_dataloader", "test_dataloader")
    ]
    assert sizes == [1797 - 359 - 179, 359, 179]
    train_x, train_y = all_rows(module, "train_dataloader")
    assert float(train_x.min()) == 0.0 and float(train_x.max()) == 1.0
    assert sorted(set(train_y.tolist())) == list(range(10))


@pytest.mark.parametrize("shape", [(4, 1, 8, 8), (4, 3, 32, 32), (4, 3, 5, 7), (2, 2, 1, 1)])
def test_the_cnn_takes_images_of_any_size_and_channels(shape):
    model = CNN(in_channels=shape[1], out_features=10, channels=[8, 16, 16], dropout=0.1)
    assert model(torch.rand(*shape)).shape == (shape[0], 10)


def test_the_cnn_exports_with_torch_export():
    model = CNN(in_channels=1, out_features=10, channels=[8, 16]).eval()
    example = torch.rand(2, 1, 8, 8)
    exported = torch.export.export(model, (example,))
    assert torch.allclose(exported.module()(example), model(example))


class Classifier(L.LightningModule):
    """The least module around a network: cross-entropy and Adam."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def test_a_plain_trainer_fits_the_cnn_on_digits(tmp_path):
    data = DigitsDataModule(test_split=0.2, batch_size=64, seed=0)
    data.setup("fit")
    x_val, y_val = data.splits["test"]  # held out; fit() does not read it
    torch.manual_seed(0)
    module = Classifier(CNN(in_channels=data.channels, out_features=len(data.classes)))

    def val_loss() -> float:
        module.eval()
        with torch.no_grad():
            loss = float(nn.functional.cross_entropy(module.net(x_val), y_val))
        module.train()
        return loss

    before = val_loss()
    trainer = L.Trainer(max_epochs=1, barebones=True, accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    after = val_loss()
    assert after < 0.7 * before, (before, after)


class Counting(Classifier):
    """Counts the rows Lightning validates and tests."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__(net)
        self.rows = {"val": 0, "test": 0}

    def validation_step(self, batch, batch_idx):
        self.rows["val"] += len(batch[0])

    def test_step(self, batch, batch_idx):
        self.rows["test"] += len(batch[0])


@pytest.mark.parametrize("val_split,test_split", [(0.0, 0.0), (0.3, 0.0), (0.2, 0.2)])
def test_lightning_validates_and_tests_on_the_splits_that_exist(folder, val_split, test_split):
    data = ImageFolderDataModule(
        str(folder), image_size=6, val_split=val_split, test_split=test_split, batch_size=4
    )
    data = pickle.loads(pickle.dumps(data))  # as ddp_spawn hands it to its processes
    module = Counting(CNN(in_channels=3, out_features=3, channels=[4]))
    trainer = L.Trainer(max_epochs=1, barebones=True, accelerator="cpu", num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    if test_split > 0:
        trainer.test(module, datamodule=data, verbose=False)
    assert module.rows == {"val": int(18 * val_split), "test": int(18 * test_split)}


def test_the_options_compose_and_instantiate(composed, folder, monkeypatch):
    monkeypatch.chdir(folder.parent)
    settings = check_config(
        composed("data=images", f"data.path={folder.name}", "data.channels=1", "model=cnn")
    )
    assert isinstance(settings.data, ImagesDataConfig) and isinstance(settings.model, CNNConfig)
    assert settings.data.path == str(folder)  # absolute once checked
    data = instantiate(datamodule_config(settings.data), seed=settings.seed)
    assert isinstance(data, ImageFolderDataModule) and data.classes == CLASSES
    x, _ = next(iter(data.train_dataloader()))
    assert x.shape == (18, 1, 32, 32)
    model = instantiate(settings.model, in_channels=x.shape[1], out_features=len(data.classes))
    assert isinstance(model, CNN) and model(x).shape == (18, 3)

    digits = check_config(composed("data=digits"))
    assert isinstance(instantiate(datamodule_config(digits.data)), DigitsDataModule)

    preset = check_config(composed("experiment=digits_cnn"))
    assert isinstance(preset.data, DigitsDataConfig) and isinstance(preset.model, CNNConfig)
    assert (preset.data.val_split, preset.data.test_split, preset.data.batch_size) == (0.2, 0.2, 64)
    assert preset.loss._target_ == "torch.nn.CrossEntropyLoss"
    data = instantiate(datamodule_config(preset.data), seed=preset.seed)
    assert is_overridden("val_dataloader", data) and is_overridden("test_dataloader", data)


def datamodule_config(node) -> dict:
    """The schema's keys a datamodule takes: all but the table's (`data.standardize`, `x_test`)."""
    return {k: v for k, v in dataclasses.asdict(node).items() if k not in TABLE_ONLY}


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            "data=images data.path=/x data.channels=2",
            "data.channels=2 is not allowed: expected 1 (gray) or 3",
        ),
        ("data=images data.path=/x data.image_size=0", "data.image_size=0 is not allowed"),
        (
            "data=images data.path=/x data.image_size=[8,8,3]",
            "data.image_size=[8, 8, 3] is not allowed",
        ),
        (
            "data=digits data.standardize=true",
            "data.standardize=True is not allowed: expected data.standardize=false with data=digits",
        ),
        ("data=digits data.batch_size=0", "data.batch_size=0 is not allowed"),
        (
            "data=digits data.val_split=0.6 data.test_split=0.5",
            "data.test_split=0.5 is not allowed",
        ),
        ("model=cnn model.channels=[]", "model.channels=[] is not allowed"),
        ("model=cnn model.channels=[16,0]", "model.channels=[16, 0] is not allowed"),
        ("model=cnn model.dropout=1", "model.dropout=1.0 is not allowed: expected 0 <= x < 1"),
        ("model=cnn model.kernel_size=2", "model.kernel_size=2 is not allowed: expected an odd"),
    ],
)
def test_bad_values_of_the_image_options_are_one_line(composed, overrides, message):
    with pytest.raises(ConfigError) as err:
        check_config(composed(*overrides.split()))
    assert "\n" not in str(err.value) and message in str(err.value)
