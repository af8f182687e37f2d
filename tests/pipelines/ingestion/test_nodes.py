"""Ingestion nodes on the bundled datasets, on files in the torchvision formats and on an image folder."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from longtail.params import DatasetParams, InvalidParameters
from longtail.pipelines.ingestion.nodes import KEY_COLUMNS, flip_labels, load_and_split, plant_label_noise, split_source
from longtail.sources import DatasetFilesMissing, Source
from longtail.sources.bundled import digits
from tests.conftest import checked_block
from tests.sources.fakes import write_cifar10, write_class_folder

DIGITS = DatasetParams(name="digits", test_fraction=0.25, seed=3, label_noise=0.1)


@pytest.fixture(scope="module")
def source() -> Source:
    return digits()


def test_digits_are_images_in_the_unit_interval() -> None:
    train, test, examples = load_and_split(DIGITS)
    assert train.shape == (1347, 1, 8, 8) and test.shape == (450, 1, 8, 8) and train.dtype == np.float32
    assert min(train.min(), test.min()) == 0.0 and max(train.max(), test.max()) == 1.0
    assert set(examples["class_name"]) == {str(d) for d in range(10)}


def test_mnist5k_holds_real_mnist_digits() -> None:
    train, test, examples = load_and_split(DIGITS.model_copy(update={"name": "mnist5k"}))
    assert train.shape == (3750, 1, 28, 28) and test.shape == (1250, 1, 28, 28)
    assert np.bincount(examples["original_label"]).tolist() == [500] * 10


def test_split_is_stratified_seeded_and_a_partition(source: Source) -> None:
    images, labels = source.train.images, source.train.labels
    train, test, examples = split_source(source, 0.25, seed=3)
    pd.testing.assert_frame_equal(examples, split_source(source, 0.25, seed=3)[2])
    assert not examples["source_index"].equals(split_source(source, 0.25, seed=4)[2]["source_index"])
    sources = examples["source_index"].to_numpy()
    assert sorted(sources) == list(range(len(labels)))
    is_test = (examples["split"] == "test").to_numpy()
    assert len(test) == is_test.sum() == math.ceil(0.25 * len(labels))  # scikit-learn rounds the test share up
    assert np.array_equal(train, images[sources[~is_test]])
    assert np.array_equal(examples["original_label"], labels[sources])
    test_share = np.bincount(labels[sources[is_test]], minlength=10) / np.bincount(labels)
    assert np.all(np.abs(test_share - 0.25) < 0.02)
    assert np.array_equal(examples["index"][is_test], np.arange(is_test.sum()))


def test_an_official_split_is_kept_as_it_is(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path)
    train, test, examples = load_and_split(DIGITS.model_copy(update={"name": "cifar10", "root": str(tmp_path)}))
    np.testing.assert_array_equal(train, written.train_pixels / np.float32(255))
    np.testing.assert_array_equal(test, written.test_pixels / np.float32(255))
    for split, labels in [("train", written.train_labels), ("test", written.test_labels)]:
        rows = examples[examples["split"] == split]
        assert rows["source_index"].tolist() == rows["index"].tolist() == list(range(len(labels)))
        assert rows["original_label"].tolist() == labels.tolist()
        assert rows["class_name"].tolist() == [f"class{k}" for k in labels]
    assert "path" not in examples


def test_image_folder_examples_carry_class_names_and_paths(tmp_path: Path) -> None:
    write_class_folder(tmp_path, {"cat": 4, "dog": 4})
    dataset = DIGITS.model_copy(update={"name": "image_folder", "root": str(tmp_path), "image_size": 6, "label_noise": 0.0})
    train, test, clean = load_and_split(dataset)
    examples = plant_label_noise(clean, dataset)[0]
    assert list(examples.columns) == [*KEY_COLUMNS, "class_name", "path"]
    assert train.shape == (6, 3, 6, 6) and test.shape == (2, 3, 6, 6)
    for row in examples.itertuples():
        assert row.path == f"{row.class_name}/img{row.source_index % 4:03d}.png"
        assert row.class_name == ("cat", "dog")[row.original_label]


def test_a_missing_dataset_stops_the_node_with_the_clear_message(tmp_path: Path) -> None:
    with pytest.raises(DatasetFilesMissing, match="dataset 'mnist': files missing from "):
        load_and_split(DIGITS.model_copy(update={"name": "mnist", "root": str(tmp_path)}))


def test_flip_labels_changes_exactly_the_fraction_to_other_classes() -> None:
    labels = np.repeat(np.arange(10), 100)
    noisy = flip_labels(labels, 0.13, 10, seed=0)
    changed = noisy != labels
    assert changed.sum() == 130
    assert noisy.min() >= 0 and noisy.max() <= 9
    assert not np.array_equal(flip_labels(labels, 0.13, 10, seed=1), noisy)


def test_label_noise_touches_only_training_labels(source: Source) -> None:
    _, _, clean = split_source(source, 0.25, seed=3)
    examples, train_labels, test_labels = plant_label_noise(clean, DIGITS)
    train = examples[examples["split"] == "train"]
    test = examples[examples["split"] == "test"]
    assert train["noisy"].sum() == round(0.1 * len(train))
    assert not test["noisy"].any()
    assert np.array_equal(test_labels, test["original_label"])
    assert np.array_equal(train_labels, train["label"])
    assert (train["noisy"] == (train["label"] != train["original_label"])).all()
    assert list(examples.columns) == [*KEY_COLUMNS, "class_name"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": "svhn"}, "dataset.name='svhn'"),
        ({"image_size": 32}, "dataset.image_size=32: only used by dataset.name 'image_folder', not 'digits'"),
        ({"name": "image_folder", "image_size": 8, "channels": 2}, "dataset.channels=2"),
    ],
)
def test_bad_dataset_parameters_are_refused_by_name(changes: dict, expected: str) -> None:
    with pytest.raises(InvalidParameters, match=re.escape(expected)):
        checked_block("dataset", {**DIGITS.model_dump(), **changes})
