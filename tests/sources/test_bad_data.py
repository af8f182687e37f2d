"""Bad data is caught where it enters, named by dataset, split and example index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from longtail.sources import InvalidDataset, LabelledImages, Source, load_source
from tests.sources.fakes import write_idx, write_mnist

NAMES = tuple(str(c) for c in range(3))


def split(labels: list[int], nan_rows: tuple[int, ...] = ()) -> LabelledImages:
    images = np.zeros((len(labels), 1, 2, 2), dtype=np.float32)
    images[list(nan_rows), 0, 0, 0] = np.nan
    return LabelledImages(images, np.array(labels, dtype=np.int64), NAMES)


def test_nan_pixels_are_named_by_split_and_index() -> None:
    with pytest.raises(InvalidDataset, match=r"toy train: image 1, 3 holds NaN or infinite values"):
        Source(split([0, 0, 1, 1, 2, 2], nan_rows=(1, 3))).check("toy")


def test_labels_outside_the_classes_are_named() -> None:
    with pytest.raises(InvalidDataset, match=r"toy test: label 7 of example 2 is outside the 3 classes \[0, 2\]"):
        Source(split([0, 0, 1, 1, 2, 2]), split([0, 1, 7])).check("toy")


def test_a_class_with_a_single_example_is_named() -> None:
    with pytest.raises(InvalidDataset, match=r"toy: class '2' has 1 training example\(s\)"):
        Source(split([0, 0, 1, 1, 2])).check("toy")


def test_a_test_class_missing_from_training_is_named() -> None:
    with pytest.raises(InvalidDataset, match=r"toy: class '2' is in the test split but not in the training split"):
        Source(split([0, 0, 1, 1]), split([0, 1, 2])).check("toy")


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(InvalidDataset) as error:
        Source(split([0, 0, 1, 5], nan_rows=(0,)), split([0, 9])).check("toy")
    assert len(error.value.problems) == 3


def test_mismatched_image_and_label_counts_are_refused() -> None:
    with pytest.raises(InvalidDataset, match="4 images but 3 labels"):
        LabelledImages(np.zeros((4, 1, 2, 2), np.float32), np.zeros(3, np.int64), NAMES)


def test_a_corrupt_label_file_is_caught_on_loading(tmp_path: Path) -> None:
    written = write_mnist(tmp_path)
    labels = written.train_labels.copy()
    labels[4] = 12
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", labels)
    with pytest.raises(InvalidDataset, match=r"mnist train: label 12 of example 4 is outside"):
        load_source("mnist", tmp_path)
