"""The shapes every source returns, and the errors a source raises when its files are wrong."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longtail.errors import UserFacingError


class DatasetFilesMissing(UserFacingError, FileNotFoundError):
    """The dataset's files are not where they were looked for (and could not be downloaded)."""


class InvalidDataset(UserFacingError, ValueError):
    """The dataset's files are there but cannot be used; one line per problem, naming the file or class."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems) if len(problems) == 1 else "\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class LabelledImages:
    """A dataset as arrays: ``images`` float32 (N, C, H, W) in [0, 1], ``labels`` int64 (N,).

    ``paths`` are the image files (relative to the dataset's root) where a source has them,
    ``row_ids`` the rows of a table file.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    paths: tuple[str, ...] | None = None
    row_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise InvalidDataset([f"images must be (N, C, H, W), got shape {self.images.shape}"])
        if len(self.images) != len(self.labels):
            raise InvalidDataset([f"{len(self.images)} images but {len(self.labels)} labels"])
        if self.paths is not None and len(self.paths) != len(self.labels):
            raise InvalidDataset([f"{len(self.paths)} paths but {len(self.labels)} labels"])
        if self.row_ids is not None and len(self.row_ids) != len(self.labels):
            raise InvalidDataset([f"{len(self.row_ids)} row ids but {len(self.labels)} labels"])

    def problems(self, where: str) -> list[str]:
        """Bad values, each named by ``where`` (dataset and split) and example index."""
        found = []
        not_finite = np.flatnonzero(~np.isfinite(self.images.reshape(len(self.images), -1)).all(axis=1))
        if len(not_finite):
            found.append(f"{where}: image {_listed(not_finite)} holds NaN or infinite values")
        outside = np.flatnonzero((self.labels < 0) | (self.labels >= len(self.class_names)))
        if len(outside):
            found.append(
                f"{where}: label {int(self.labels[outside[0]])} of example {_listed(outside)} is outside "
                f"the {len(self.class_names)} classes [0, {len(self.class_names) - 1}]"
            )
        return found

    def subset(self, rows: np.ndarray) -> LabelledImages:
        """The examples at ``rows``, in that order."""
        paths = None if self.paths is None else tuple(self.paths[i] for i in rows)
        row_ids = None if self.row_ids is None else self.row_ids[rows]
        return LabelledImages(self.images[rows], self.labels[rows], self.class_names, paths, row_ids)


@dataclass(frozen=True)
class Source:
    """A loaded dataset: its training examples and, for datasets with an official split, its test
    examples (``test`` is None where the caller splits ``train`` itself)."""

    train: LabelledImages
    test: LabelledImages | None = None

    def __post_init__(self) -> None:
        if self.test is None:
            return
        if self.test.class_names != self.train.class_names:
            raise ValueError("the train and test splits name different classes")
        if self.test.images.shape[1:] != self.train.images.shape[1:]:
            raise ValueError(
                f"train images are {self.train.images.shape[1:]} but test images {self.test.images.shape[1:]}"
            )

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names

    def check(self, name: str) -> None:
        """Raise ``InvalidDataset`` listing every bad value and every unusable class."""
        found = self.train.problems(f"{name} train")
        if self.test is not None:
            found += self.test.problems(f"{name} test")
        if not found:
            found = self._class_problems(name)
        if found:
            raise InvalidDataset(found)

    def _class_problems(self, name: str) -> list[str]:
        counts = np.bincount(self.train.labels, minlength=len(self.class_names))
        found = [
            f"{name}: class {self.class_names[c]!r} has {counts[c]} training example(s); each class needs at least 2"
            for c in np.flatnonzero((counts > 0) & (counts < 2))
        ]
        if self.test is not None:
            found += [
                f"{name}: class {self.class_names[c]!r} is in the test split but not in the training split"
                for c in np.unique(self.test.labels)
                if counts[c] == 0
            ]
        return found


def _listed(indices: np.ndarray, shown: int = 5) -> str:
    """``3`` or ``3, 8, 9 (and 12 more)``."""
    head = ", ".join(str(int(i)) for i in indices[:shown])
    return head if len(indices) <= shown else f"{head} (and {len(indices) - shown} more)"


def unit_interval(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1] (divided in float32: CIFAR's 150 M values would take 1.2 GB in float64)."""
    return np.divide(pixels, 255, dtype=np.float32)
