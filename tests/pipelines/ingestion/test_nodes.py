"""Ingestion nodes on the real bundled datasets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from longtail.params import InvalidParameters
from longtail.pipelines.ingestion.nodes import flip_labels, load_dataset, plant_label_noise, split_dataset

DIGITS = {"name": "digits", "test_fraction": 0.25, "seed": 3, "label_noise": 0.1}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return load_dataset(DIGITS)


def test_digits_are_images_in_the_unit_interval(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert set(np.unique(labels)) == set(range(10))


def test_mnist5k_holds_real_mnist_digits() -> None:
    images, labels = load_dataset({**DIGITS, "name": "mnist5k"})
    assert images.shape == (5000, 1, 28, 28)
    assert np.bincount(labels).tolist() == [500] * 10


def test_split_is_stratified_seeded_and_a_partition(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    train, test, examples = split_dataset(images, labels, DIGITS)
    again = split_dataset(images, labels, DIGITS)[2]
    pd.testing.assert_frame_equal(examples, again)
    other_seed = split_dataset(images, labels, {**DIGITS, "seed": 4})[2]
    assert not examples["source_index"].equals(other_seed["source_index"])
    sources = examples["source_index"].to_numpy()
    assert sorted(sources) == list(range(len(labels)))
    is_test = (examples["split"] == "test").to_numpy()
    assert len(test) == is_test.sum() == math.ceil(0.25 * len(labels))  # scikit-learn rounds the test share up
    assert np.array_equal(train, images[sources[~is_test]])
    test_share = np.bincount(labels[sources[is_test]], minlength=10) / np.bincount(labels)
    assert np.all(np.abs(test_share - 0.25) < 0.02)
    assert np.array_equal(examples["index"][is_test], np.arange(is_test.sum()))


def test_flip_labels_changes_exactly_the_fraction_to_other_classes() -> None:
    labels = np.repeat(np.arange(10), 100)
    noisy = flip_labels(labels, 0.13, 10, seed=0)
    changed = noisy != labels
    assert changed.sum() == 130
    assert noisy.min() >= 0 and noisy.max() <= 9
    assert not np.array_equal(flip_labels(labels, 0.13, 10, seed=1), noisy)


def test_label_noise_touches_only_training_labels(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    _, _, clean = split_dataset(images, labels, DIGITS)
    examples, train_labels, test_labels = plant_label_noise(clean, DIGITS)
    train = examples[examples["split"] == "train"]
    test = examples[examples["split"] == "test"]
    assert train["noisy"].sum() == round(0.1 * len(train))
    assert not test["noisy"].any()
    assert np.array_equal(test_labels, test["original_label"])
    assert np.array_equal(train_labels, train["label"])
    assert (train["noisy"] == (train["label"] != train["original_label"])).all()
    assert list(examples.columns) == ["split", "index", "source_index", "original_label", "label", "noisy"]


def test_unknown_dataset_is_refused_by_name() -> None:
    with pytest.raises(InvalidParameters, match="dataset.name='svhn'"):
        load_dataset({**DIGITS, "name": "svhn"})
