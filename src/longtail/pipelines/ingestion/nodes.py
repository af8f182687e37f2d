"""Ingestion: load a dataset, split it into train and test, optionally plant label noise."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from longtail.params import DatasetParams, parse
from longtail.sources import load_source

logger = logging.getLogger(__name__)


def load_dataset(dataset: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, C, H, W) float32 in [0, 1] and labels (N,) of the dataset named in the parameters."""
    params = parse(DatasetParams, dataset, "dataset")
    source = load_source(params.name)
    logger.info("loaded %s: %d images of shape %s", params.name, len(source.labels), source.images.shape[1:])
    return source.images, source.labels


def split_dataset(
    images: np.ndarray, labels: np.ndarray, dataset: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Stratified, seeded train/test split.

    Returns the train images, the test images and a table with one row per example:
    ``split``, ``index`` (position within its split), ``source_index`` (position in the
    source dataset) and ``original_label``.
    """
    params = parse(DatasetParams, dataset, "dataset")
    positions = np.arange(len(labels))
    train_rows, test_rows = train_test_split(
        positions, test_size=params.test_fraction, random_state=params.seed, stratify=labels
    )
    train_rows, test_rows = np.sort(train_rows), np.sort(test_rows)
    examples = pd.concat(
        [_split_table("train", train_rows, labels), _split_table("test", test_rows, labels)],
        ignore_index=True,
    )
    return images[train_rows], images[test_rows], examples


def _split_table(split: str, rows: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "split": split,
            "index": np.arange(len(rows), dtype=np.int64),
            "source_index": rows.astype(np.int64),
            "original_label": labels[rows].astype(np.int64),
        }
    )


def flip_labels(labels: np.ndarray, fraction: float, n_classes: int, seed: int) -> np.ndarray:
    """Flip ``round(fraction * n)`` labels, chosen uniformly, each to a uniformly chosen *other* class."""
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    chosen = rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)
    shift = rng.integers(1, n_classes, size=len(chosen))
    noisy[chosen] = (labels[chosen] + shift) % n_classes
    return noisy


def plant_label_noise(
    examples: pd.DataFrame, dataset: dict[str, Any]
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Flip ``dataset.label_noise`` of the training labels (seeded by ``dataset.seed``).

    Returns the completed ``examples`` table (adds ``label``, the label used for training,
    and ``noisy``), the training labels and the test labels.
    """
    params = parse(DatasetParams, dataset, "dataset")
    n_classes = int(examples["original_label"].max()) + 1
    is_train = (examples["split"] == "train").to_numpy()
    labels = examples["original_label"].to_numpy().copy()
    labels[is_train] = flip_labels(labels[is_train], params.label_noise, n_classes, params.seed)
    examples = examples.assign(label=labels, noisy=labels != examples["original_label"].to_numpy())
    logger.info("planted %d noisy training labels", int(examples["noisy"].sum()))
    return examples, labels[is_train], labels[~is_train]
