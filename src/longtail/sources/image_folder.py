"""Users' own images in torchvision's ``ImageFolder`` layout: one sub-folder per class, named after it.

    <root>/train/<class>/*.png|jpg|jpeg and <root>/test/<class>/*    an official split
    <root>/<class>/*.png|jpg|jpeg                                      split later by dataset.test_fraction

Every image is converted to one channel (L) or three (RGB), centre-cropped to a square and resized
to ``image_size`` pixels a side; without ``image_size``, the images must all have one square size,
which is kept. All problems found are reported at once, each naming its class or file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from longtail.sources.base import DatasetFilesMissing, InvalidDataset, LabelledImages, Source, unit_interval

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "F"})  # and the 16-bit "I;16*" modes


@dataclass(frozen=True)
class _Split:
    folder: Path
    classes: dict[str, list[Path]]  # class name -> its image files, both sorted by name

    def files(self, class_names: tuple[str, ...]) -> list[Path]:
        return [path for name in class_names for path in self.classes[name]]

    def labels(self, class_names: tuple[str, ...]) -> np.ndarray:
        counts = [len(self.classes[name]) for name in class_names]
        return np.repeat(np.arange(len(class_names), dtype=np.int64), counts)


def load_image_folder(root: Path | str, image_size: int | None = None, channels: int | None = None) -> Source:
    """The images under ``root``, ``channels`` 1 or 3 (None: 1 when every image is grayscale, else 3),
    ``image_size`` pixels a side (None: the one size they all share, ``common_size``).

    Classes are the sub-folder names in sorted order; within a class, files are in name order,
    which is the order of ``source_index``. ``Source.train.paths`` are relative to ``root``.
    """
    root = Path(root)
    splits = _list_splits(root)
    problems = _class_problems(splits)
    if problems:
        raise InvalidDataset(problems)
    class_names = tuple(splits[0].classes)
    files = [split.files(class_names) for split in splits]
    every_file = [path for part in files for path in part]
    pixels = _read_images(every_file, image_size or common_size(every_file), channels)
    ends = np.cumsum([len(part) for part in files])[:-1]
    return Source(
        *(
            LabelledImages(unit_interval(block), split.labels(class_names), class_names, _relative(part, root))
            for block, split, part in zip(np.split(pixels, ends), splits, files, strict=True)
        )
    )


def _relative(paths: list[Path], root: Path) -> tuple[str, ...]:
    return tuple(path.relative_to(root).as_posix() for path in paths)


def _list_splits(root: Path) -> list[_Split]:
    """[train, test] for the train/test layout, else [everything]."""
    if not root.is_dir():
        raise DatasetFilesMissing(
            f"dataset 'image_folder': {root.resolve()} is not a folder. Set `dataset.root` to a folder of class "
            "sub-folders (<root>/<class>/*.png), or of train/ and test/ folders that each hold the class sub-folders."
        )
    if not ((root / "train").is_dir() or (root / "test").is_dir()):
        return [_list_classes(root)]
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DatasetFilesMissing(
                f"dataset 'image_folder': {(root / split).resolve()} does not exist; with the train/test layout "
                "both train/ and test/ must hold a sub-folder per class."
            )
    return [_list_classes(root / "train"), _list_classes(root / "test")]


def _list_classes(folder: Path) -> _Split:
    classes = {
        entry.name: sorted(path for path in entry.iterdir() if _is_image_file(path))
        for entry in sorted(folder.iterdir())
        if entry.is_dir() and not entry.name.startswith(".")
    }
    return _Split(folder, classes)


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _class_problems(splits: list[_Split]) -> list[str]:
    """Too few classes, classes with fewer than 2 training images, classes in one split only."""
    train = splits[0]
    problems = []
    if len(train.classes) < 2:
        problems.append(
            f"{train.folder}: {len(train.classes)} class folder(s) {sorted(train.classes)}; "
            "at least 2 are needed, one sub-folder per class"
        )
    for name, files in train.classes.items():
        if not files:
            problems.append(f"class {name!r}: no {'/'.join(IMAGE_SUFFIXES)} images in {train.folder / name}")
        elif len(files) == 1:
            problems.append(f"class {name!r}: a single image ({files[0]}); each class needs at least 2")
    if len(splits) == 2:
        test = splits[1]
        for name in train.classes:
            if not test.classes.get(name):
                problems.append(f"class {name!r}: has training images but no test images in {test.folder / name}")
        for name in test.classes.keys() - train.classes.keys():
            problems.append(f"class {name!r}: in {test.folder} but not in {train.folder}; models would never learn it")
    return problems


def common_size(paths: list[Path], shown: int = 3) -> int:
    """The side of the square size every image has (read from the files' headers only).

    Several sizes, or one that is not square, raise one message naming the ``shown`` most
    common sizes with their counts and the parameter that resizes them. Unreadable files are
    left to ``_read_images``, which names them all.
    """
    sizes = Counter(size for size in map(_header_size, paths) if size is not None)
    if not sizes:
        return 1  # every file is unreadable: _read_images reports each of them
    if len(sizes) == 1 and len({*next(iter(sizes))}) == 1:
        return next(iter(sizes))[0]
    found = ", ".join(f"{width}×{height}: {count} image{'s' if count > 1 else ''}" for (width, height), count in sizes.most_common(shown))
    if len(sizes) > shown:
        found += f", and {len(sizes) - shown} more size{'s' if len(sizes) - shown > 1 else ''}"
    what = "images of several sizes" if len(sizes) > 1 else "images that are not square"
    raise InvalidDataset([
        f"dataset 'image_folder' has {what} ({found}); set dataset.image_size to the side, in pixels, "
        "that every image is centre-cropped to a square and resized to"
    ])


def _header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header, None when it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def _read_images(paths: list[Path], size: int, channels: int | None) -> np.ndarray:
    """uint8 (N, channels, size, size); every unreadable file is reported at once."""
    mode = "L" if channels == 1 else "RGB"
    pixels, problems, all_gray = [], [], True
    for path in paths:
        try:
            image, gray = _read_image(path, mode, size)
        except InvalidDataset as error:
            problems.extend(error.problems)
            continue
        pixels.append(image)
        all_gray &= gray
    if problems:
        raise InvalidDataset(problems)
    stacked = np.stack(pixels)
    return stacked[:, :1] if channels is None and all_gray else stacked  # gray in RGB repeats one channel


def _read_image(path: Path, mode: str, size: int) -> tuple[np.ndarray, bool]:
    """One image as uint8 (C, size, size), and whether the file is grayscale."""
    if path.stat().st_size == 0:
        raise InvalidDataset([f"{path}: empty file"])
    try:
        with Image.open(path) as image:
            gray = image.mode in _GRAYSCALE_MODES or image.mode.startswith("I;16")
            fitted = ImageOps.fit(image.convert(mode), (size, size), method=Image.Resampling.BILINEAR)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InvalidDataset([f"{path}: unreadable image ({error})"]) from None
    pixels = np.asarray(fitted, dtype=np.uint8)
    return (pixels[None] if mode == "L" else pixels.transpose(2, 0, 1)), gray
