"""Small datasets written in the real on-disk formats, for tests: torchvision's MNIST IDX files,
CIFAR-10/100 python batches (pickles, protocol 2 like the official files) and image folders of PNGs.

Each writer returns what it wrote, so tests can compare it with what a source reads back.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Written:
    train_pixels: np.ndarray  # uint8 (N, C, H, W)
    train_labels: np.ndarray
    test_pixels: np.ndarray
    test_labels: np.ndarray

    def splits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(train pixels, train labels), (test pixels, test labels)]."""
        return [(self.train_pixels, self.train_labels), (self.test_pixels, self.test_labels)]


def _random_split(n_train: int, n_test: int, shape: tuple[int, ...], n_classes: int, seed: int) -> Written:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n_train + n_test, *shape), dtype=np.uint8)
    labels = np.arange(n_train + n_test) % n_classes  # every class in both splits
    return Written(pixels[:n_train], labels[:n_train], pixels[n_train:], labels[n_train:])


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, big-endian int32 sizes, the data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 30, n_test: int = 10) -> Written:
    """``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` as torchvision extracts them."""
    written = _random_split(n_train, n_test, (1, 28, 28), 10, seed=1)
    raw = root / folder / "raw"
    for prefix, (pixels, labels) in zip(("train", "t10k"), written.splits(), strict=True):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", pixels[:, 0])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return written


def pickle_batch(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(content, protocol=2))


def _cifar_batch(pixels: np.ndarray, labels: np.ndarray, label_key: str) -> dict:
    return {"batch_label": "fake", label_key: labels.tolist(), "data": pixels.reshape(len(pixels), -1), "filenames": []}


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 6) -> Written:
    """``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``."""
    written = _random_split(5 * per_batch, n_test, (3, 32, 32), 10, seed=2)
    folder = root / "cifar-10-batches-py"
    for i in range(5):
        rows = slice(i * per_batch, (i + 1) * per_batch)
        batch = _cifar_batch(written.train_pixels[rows], written.train_labels[rows], "labels")
        pickle_batch(folder / f"data_batch_{i + 1}", batch)
    pickle_batch(folder / "test_batch", _cifar_batch(written.test_pixels, written.test_labels, "labels"))
    pickle_batch(folder / "batches.meta", {"label_names": [f"class{k}" for k in range(10)], "num_vis": 3072})
    return written


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100) -> Written:
    """``<root>/cifar-100-python/{train,test,meta}`` with ``fine_labels``."""
    written = _random_split(n_train, n_test, (3, 32, 32), 100, seed=3)
    folder = root / "cifar-100-python"
    pickle_batch(folder / "train", _cifar_batch(written.train_pixels, written.train_labels, "fine_labels"))
    pickle_batch(folder / "test", _cifar_batch(written.test_pixels, written.test_labels, "fine_labels"))
    pickle_batch(folder / "meta", {"fine_label_names": [f"fine{k}" for k in range(100)], "coarse_label_names": []})
    return written


def write_class_folder(folder: Path, classes: dict[str, int], size: tuple[int, int] = (12, 10), mode: str = "RGB") -> None:
    """``classes[name]`` PNG files in ``folder/<name>/``, each class a distinct colour plus noise
    (so that a network can tell the classes apart); ``size`` is (width, height)."""
    rng = np.random.default_rng(len(classes))
    for k, (name, count) in enumerate(classes.items()):
        (folder / name).mkdir(parents=True, exist_ok=True)
        colour = np.array([80 * k % 256, 255 - 60 * k % 256, 40 + 90 * k % 216])
        for i in range(count):
            noise = rng.integers(-30, 30, (size[1], size[0], 3))
            pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").convert(mode).save(folder / name / f"img{i:03d}.png")
