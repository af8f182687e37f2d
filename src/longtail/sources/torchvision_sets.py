"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 from their official files, in torchvision's
folder layout under a root folder, with their official train/test splits.

torchvision downloads them (``download=True``). MNIST-style IDX files are read by torchvision
itself. CIFAR's official files are Python pickles, which torchvision unpickles without
restriction once their md5 matches; here they are read by ``_ArraysOnly``, an unpickler that
resolves nothing but what a numpy array needs, so a file placed by hand cannot run code.
"""

from __future__ import annotations

import codecs
import pickle
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torchvision.datasets
from torchvision.datasets.utils import download_and_extract_archive

from longtail.sources.base import DatasetFilesMissing, InvalidDataset, LabelledImages, Source, unit_interval

_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array-rebuilding function, wherever this numpy keeps it

# What an ndarray's pickle refers to (numpy 1 wrote `numpy.core`, numpy 2 writes `numpy._core`).
_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles written by Python 3
}


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays are allowed")
        return _ARRAY_GLOBALS[module, name]


def read_cifar_pickle(path: Path) -> dict:
    """One file of CIFAR's python version (a dict), unpickled by ``_ArraysOnly``."""
    with path.open("rb") as file:
        try:
            content = _ArraysOnly(file, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
            raise InvalidDataset([f"{path}: not a CIFAR python batch ({error})"]) from None
    if not isinstance(content, dict):
        raise InvalidDataset([f"{path}: not a CIFAR python batch (holds a {type(content).__name__}, not a dict)"])
    return content


@dataclass(frozen=True)
class _Layout(ABC):
    """Where one torchvision dataset keeps its files under the root, and how to read and fetch them."""

    class_name: str  # the torchvision.datasets class

    @property
    def dataset_class(self) -> type:
        return getattr(torchvision.datasets, self.class_name)

    @abstractmethod
    def folder(self, root: Path) -> Path:
        """The folder that holds the files."""

    @abstractmethod
    def files(self) -> tuple[str, ...]:
        """The file names the folder must hold."""

    @abstractmethod
    def by_hand(self, root: Path) -> str:
        """How to put the files in place without ``download``, for the message when they are missing."""

    @abstractmethod
    def download(self, root: Path) -> None:
        """Download and extract the files into their folder."""

    @abstractmethod
    def read(self, root: Path) -> Source:
        """The official train and test splits."""

    def missing(self, root: Path) -> list[str]:
        return [name for name in self.files() if not (self.folder(root) / name).is_file()]


class _Idx(_Layout):
    """MNIST and Fashion-MNIST: four gunzipped IDX files in ``<root>/<ClassName>/raw``."""

    def folder(self, root: Path) -> Path:
        return root / self.class_name / "raw"

    def files(self) -> tuple[str, ...]:
        return tuple(name.removesuffix(".gz") for name, _ in self.dataset_class.resources)

    def by_hand(self, root: Path) -> str:
        names = ", ".join(name for name, _ in self.dataset_class.resources)
        return f"gunzip {names} from {self.dataset_class.mirrors[0]} into {self.folder(root).resolve()}"

    def download(self, root: Path) -> None:
        self.dataset_class(str(root), train=True, download=True)

    def read(self, root: Path) -> Source:
        try:
            train, test = (self.dataset_class(str(root), train=split) for split in (True, False))
        except (RuntimeError, ValueError, TypeError) as error:
            raise InvalidDataset([f"{self.folder(root)}: unreadable IDX files ({error})"]) from None
        names = tuple(train.classes)
        return Source(*(_labelled(s.data.numpy()[:, None], s.targets.numpy(), names) for s in (train, test)))


class _Cifar(_Layout):
    """CIFAR-10 and CIFAR-100: the extracted python version, ``<root>/cifar-10-batches-py`` or
    ``<root>/cifar-100-python``."""

    def folder(self, root: Path) -> Path:
        return root / self.dataset_class.base_folder

    def files(self) -> tuple[str, ...]:
        cls = self.dataset_class
        return (*(name for name, _ in cls.train_list + cls.test_list), cls.meta["filename"])

    def by_hand(self, root: Path) -> str:
        return f"extract {self.dataset_class.url} into {root.resolve()}"

    def download(self, root: Path) -> None:
        cls = self.dataset_class
        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)

    def read(self, root: Path) -> Source:
        cls, folder = self.dataset_class, self.folder(root)
        meta_path, key = folder / cls.meta["filename"], cls.meta["key"]
        names = read_cifar_pickle(meta_path).get(key)
        if not names:
            raise InvalidDataset([f"{meta_path}: no {key!r}, the list of class names"])
        splits = ([name for name, _ in files] for files in (cls.train_list, cls.test_list))
        return Source(*(_read_batches(folder, batches, tuple(names)) for batches in splits))


def _read_batches(folder: Path, files: list[str], class_names: tuple[str, ...]) -> LabelledImages:
    """Concatenate CIFAR batches: ``data`` uint8 (n, 3072) channel-major, ``labels`` (CIFAR-10)
    or ``fine_labels`` (CIFAR-100)."""
    pixels, labels = [], []
    for name in files:
        batch = read_cifar_pickle(folder / name)
        data, batch_labels = batch.get("data"), batch.get("labels", batch.get("fine_labels"))
        if not _is_pixel_rows(data) or batch_labels is None:
            raise InvalidDataset([f"{folder / name}: expected 'data' uint8 (n, 3072) and 'labels' or 'fine_labels'"])
        pixels.append(data)
        labels.extend(batch_labels)
    return _labelled(np.concatenate(pixels).reshape(-1, 3, 32, 32), np.asarray(labels), class_names)


def _is_pixel_rows(data: object) -> bool:
    """Rows of 32x32 RGB pixels, as CIFAR stores them."""
    return isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3 * 32 * 32


def _labelled(pixels: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]) -> LabelledImages:
    return LabelledImages(unit_interval(pixels), labels.astype(np.int64), class_names)


LAYOUTS: dict[str, _Layout] = {
    "mnist": _Idx("MNIST"),
    "fashion_mnist": _Idx("FashionMNIST"),
    "cifar10": _Cifar("CIFAR10"),
    "cifar100": _Cifar("CIFAR100"),
}


def load_torchvision_set(name: str, root: Path, download: bool = False) -> Source:
    """The dataset ``name`` (a key of ``LAYOUTS``) from its files under ``root``, downloaded
    first when missing and ``download`` is true; ``DatasetFilesMissing`` when they are not there."""
    layout = LAYOUTS[name]
    missing = layout.missing(root)
    if missing and download:
        try:
            layout.download(root)
        except Exception as error:  # noqa: BLE001 - any failure of torchvision's download becomes the message below
            failure = f"downloading failed ({type(error).__name__}: {error})"
            raise _missing_files(name, layout, root, missing, failure) from None
        missing = layout.missing(root)
        if missing:
            raise _missing_files(name, layout, root, missing, "the download did not produce them")
    if missing:
        raise _missing_files(name, layout, root, missing)
    return layout.read(root)


def _missing_files(
    name: str, layout: _Layout, root: Path, missing: list[str], download_failure: str | None = None
) -> DatasetFilesMissing:
    """The message: which dataset, where it looked, what is missing, why, and three ways to fix it."""
    if download_failure is None:
        why = "dataset.download is false"
        retry = f"set `dataset.download: true` (torchvision downloads into {root.resolve()})"
    else:
        why, retry = download_failure, "check the network connection and run again"
    return DatasetFilesMissing(
        f"dataset {name!r}: files missing from {layout.folder(root).resolve()}: {', '.join(missing)}; {why}.\n"
        f"To get them, {retry}; or {layout.by_hand(root)}; "
        f"or point `dataset.root` at the folder that holds {layout.folder(Path())}."
    )
