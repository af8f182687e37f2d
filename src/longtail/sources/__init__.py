"""Where examples come from: each source returns images as float32 (N, C, H, W) in [0, 1] and
integer labels, with the dataset's official test split where it has one. Kedro-free, so users
can load the same data in their own code::

    from longtail.sources import load_source
    source = load_source("cifar10", "data/01_raw", download=True)
    source.train.images.shape  # (50000, 3, 32, 32)
"""

from __future__ import annotations

from pathlib import Path

from longtail.sources.base import DatasetFilesMissing, InvalidDataset, LabelledImages, Source
from longtail.sources.bundled import digits, mnist5k
from longtail.sources.image_folder import load_image_folder
from longtail.sources.table import TableSpec, load_table
from longtail.sources.torchvision_sets import LAYOUTS, load_torchvision_set

__all__ = ["NAMES", "DatasetFilesMissing", "InvalidDataset", "LabelledImages", "Source", "TableSpec", "load_source"]

BUNDLED = {"digits": digits, "mnist5k": mnist5k}
NAMES = (*BUNDLED, *LAYOUTS, "image_folder", "table")


def load_source(
    name: str,
    root: Path | str = "data/01_raw",
    *,
    download: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
    table: TableSpec | None = None,
) -> Source:
    """Load the dataset ``name`` (one of ``NAMES``).

    ``root`` is where the torchvision datasets' folders are (or are downloaded to, with
    ``download``) and, for ``image_folder``, the image folder itself; ``image_size`` (None: the
    size its images share) and ``channels`` apply to ``image_folder`` only; ``table`` (the file
    and its columns) to ``table`` only. The bundled datasets need none of them.
    Bad values (NaN pixels, labels outside the classes) and unusable classes (a single
    example, a test class the training split lacks) raise ``InvalidDataset``, naming the
    dataset, split and example indices.
    """
    if name == "table" and table is None:
        raise ValueError("table needs `table`, a TableSpec naming the file and its label column")
    source = load_table(table) if name == "table" else _read_source(name, root, download, image_size, channels)
    source.check(name)
    return source


def _read_source(name: str, root: Path | str, download: bool, image_size: int | None, channels: int | None) -> Source:
    if name in BUNDLED:
        return BUNDLED[name]()
    if name in LAYOUTS:
        return load_torchvision_set(name, Path(root), download)
    if name == "image_folder":
        return load_image_folder(root, image_size, channels)
    raise ValueError(f"unknown dataset {name!r}; allowed: {list(NAMES)}")
