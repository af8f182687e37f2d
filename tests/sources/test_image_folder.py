"""Users' own images: the two folder layouts, channels and resizing, and each error message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from longtail.sources import DatasetFilesMissing, InvalidDataset, load_source
from longtail.sources.image_folder import load_image_folder
from tests.sources.fakes import write_class_folder

CLASSES = {"cat": 3, "dog": 2, "emu": 4}


@pytest.fixture
def split_folder(tmp_path: Path) -> Path:
    """The train/test layout: 3 classes, 9 training and 6 test images, 12x10 RGB."""
    write_class_folder(tmp_path / "train", CLASSES)
    write_class_folder(tmp_path / "test", dict.fromkeys(CLASSES, 2))
    return tmp_path


def test_train_and_test_folders_are_the_official_split(split_folder: Path) -> None:
    source = load_source("image_folder", split_folder, image_size=8)
    assert source.class_names == ("cat", "dog", "emu")
    assert source.train.images.shape == (9, 3, 8, 8) and source.test.images.shape == (6, 3, 8, 8)
    assert source.train.labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert source.test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert source.train.paths[2:4] == ("train/cat/img002.png", "train/dog/img000.png")
    assert source.test.paths[-1] == "test/emu/img001.png"
    assert 0 <= source.train.images.min() and source.train.images.max() <= 1


def test_one_folder_of_classes_is_left_for_the_caller_to_split(tmp_path: Path) -> None:
    write_class_folder(tmp_path, CLASSES)
    source = load_image_folder(tmp_path, image_size=5)
    assert source.test is None
    assert source.train.images.shape == (9, 3, 5, 5)
    assert source.train.paths[0] == "cat/img000.png"


def test_images_are_centre_cropped_then_resized(tmp_path: Path) -> None:
    """A 30x10 image, white in the middle (a little wider than the central 10x10, which the
    resampling filter reaches past), black at the sides, becomes a white square."""
    pixels = np.zeros((10, 30), np.uint8)
    pixels[:, 7:23] = 255
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(pixels, "L").save(tmp_path / name / f"{i}.png")
    images = load_image_folder(tmp_path, image_size=4).train.images
    assert images.shape == (4, 1, 4, 4)
    np.testing.assert_allclose(images, 1.0)


@pytest.mark.parametrize(("mode", "channels", "expected"), [("L", None, 1), ("RGB", None, 3), ("L", 3, 3), ("RGB", 1, 1)])
def test_channels_are_inferred_or_forced(tmp_path: Path, mode: str, channels: int | None, expected: int) -> None:
    write_class_folder(tmp_path, {"a": 2, "b": 2}, mode=mode)
    assert load_image_folder(tmp_path, 6, channels).train.images.shape == (4, expected, 6, 6)


def test_one_colour_image_makes_every_image_rgb(tmp_path: Path) -> None:
    write_class_folder(tmp_path, {"a": 2, "b": 2}, mode="L")
    Image.new("RGB", (6, 6), (255, 0, 0)).save(tmp_path / "b" / "red.png")
    images = load_image_folder(tmp_path, 6).train.images
    assert images.shape == (5, 3, 6, 6)
    np.testing.assert_array_equal(images[0, 0], images[0, 1])  # grayscale images repeat their channel


def _problems(root: Path) -> str:
    with pytest.raises(InvalidDataset) as error:
        load_image_folder(root, 8)
    return str(error.value)


def test_unreadable_and_empty_files_are_all_named(split_folder: Path) -> None:
    (split_folder / "train/cat/broken.png").write_bytes(b"not a png at all")
    (split_folder / "test/dog/empty.jpg").write_bytes(b"")
    truncated = (split_folder / "train/emu/img000.png").read_bytes()[:60]
    (split_folder / "train/emu/img000.png").write_bytes(truncated)
    message = _problems(split_folder)
    assert f"{split_folder / 'train/cat/broken.png'}: unreadable image" in message
    assert f"{split_folder / 'test/dog/empty.jpg'}: empty file" in message
    assert f"{split_folder / 'train/emu/img000.png'}: unreadable image" in message


def test_a_class_missing_from_test_is_named(split_folder: Path) -> None:
    for path in (split_folder / "test/dog").iterdir():
        path.unlink()
    assert f"class 'dog': has training images but no test images in {split_folder / 'test/dog'}" in _problems(split_folder)


def test_a_test_class_absent_from_train_is_named(split_folder: Path) -> None:
    write_class_folder(split_folder / "test", {"fox": 2})
    assert f"class 'fox': in {split_folder / 'test'} but not in {split_folder / 'train'}" in _problems(split_folder)


def test_classes_with_fewer_than_two_images_are_named(tmp_path: Path) -> None:
    write_class_folder(tmp_path, {"a": 2, "b": 1})
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("not an image")
    message = _problems(tmp_path)
    assert f"class 'b': a single image ({tmp_path / 'b/img000.png'}); each class needs at least 2" in message
    assert f"class 'c': no .png/.jpg/.jpeg images in {tmp_path / 'c'}" in message


def test_fewer_than_two_classes_are_refused(tmp_path: Path) -> None:
    write_class_folder(tmp_path, {"only": 4})
    assert f"{tmp_path}: 1 class folder(s) ['only']; at least 2 are needed" in _problems(tmp_path)


def test_missing_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetFilesMissing, match=f"dataset 'image_folder': {tmp_path / 'nowhere'} is not a folder"):
        load_image_folder(tmp_path / "nowhere", 8)
    write_class_folder(tmp_path / "train", CLASSES)
    with pytest.raises(DatasetFilesMissing, match=f"{tmp_path / 'test'} does not exist"):
        load_image_folder(tmp_path, 8)


def test_without_image_size_the_shared_size_is_kept(tmp_path: Path) -> None:
    write_class_folder(tmp_path, CLASSES, size=(7, 7))
    images = load_source("image_folder", tmp_path).train.images
    assert images.shape == (9, 3, 7, 7)
    original = np.asarray(Image.open(tmp_path / "cat" / "img000.png"), dtype=np.float32).transpose(2, 0, 1) / 255
    np.testing.assert_allclose(images[0], original, atol=1e-6)  # kept as it is: no crop, no resampling


def test_without_image_size_mixed_sizes_are_named_with_their_counts(tmp_path: Path) -> None:
    write_class_folder(tmp_path, {"a": 3, "b": 2}, size=(8, 8))
    write_class_folder(tmp_path, {"c": 4}, size=(6, 6))
    write_class_folder(tmp_path, {"e": 2}, size=(5, 5))
    Image.new("RGB", (9, 9)).save(tmp_path / "a" / "odd.png")
    with pytest.raises(InvalidDataset) as error:
        load_image_folder(tmp_path)
    message = str(error.value)
    assert "several sizes (8×8: 5 images, 6×6: 4 images, 5×5: 2 images, and 1 more size)" in message
    assert "set dataset.image_size" in message
    assert "\n" not in message  # one message


def test_without_image_size_one_size_that_is_not_square_is_named(tmp_path: Path) -> None:
    write_class_folder(tmp_path, {"a": 2, "b": 2})  # 12x10
    with pytest.raises(InvalidDataset, match=r"not square \(12×10: 4 images\); set dataset.image_size"):
        load_image_folder(tmp_path)
