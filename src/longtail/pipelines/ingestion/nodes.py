"""Ingestion: load a dataset, split it into train and test (unless it comes split), optionally
plant label noise."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from longtail.params import DatasetParams
from longtail.sources import LabelledImages, Source, TableSpec, load_source

logger = logging.getLogger(__name__)

# The first columns of the `examples` table, in this order; source-specific ones follow.
KEY_COLUMNS = ["split", "index", "source_index", "original_label", "label", "noisy"]

Part = tuple[LabelledImages, np.ndarray]  # a split's examples and their positions in the source


def load_and_split(dataset: DatasetParams) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Read the dataset named in the parameters and split it (see ``split_source``)."""
    table = None
    if dataset.name == "table":
        table = TableSpec(dataset.path, dataset.label_column, dataset.feature_columns, dataset.split_column)
    source = load_source(
        dataset.name,
        dataset.root,
        download=dataset.download,
        image_size=dataset.image_size,
        channels=dataset.channels,
        table=table,
    )
    logger.info(
        "loaded %s: %d examples of shape %s%s",
        dataset.name,
        len(source.train.labels),
        source.train.images.shape[1:],
        "" if source.test is None else f" and an official test split of {len(source.test.labels)}",
    )
    return split_source(source, dataset.test_fraction, dataset.seed)


def split_source(source: Source, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """The train images, the test images and a table with one row per example.

    A source's official test split is used as it is; otherwise a stratified, seeded share
    ``test_fraction`` of its examples becomes the test split. Columns: ``split``, ``index``
    (position within its split), ``source_index`` (position in the source's split it comes
    from), ``original_label``, ``class_name`` (of the original label) and, for sources with
    files, ``path``, for tables ``row_id`` (the row in the file).
    """
    if source.test is None:
        train, test = _stratified_split(source.train, test_fraction, seed)
    else:
        train, test = _official_split(source)
    examples = pd.concat([_split_table("train", *train), _split_table("test", *test)], ignore_index=True)
    return train[0].images, test[0].images, examples


def _official_split(source: Source) -> tuple[Part, Part]:
    return (source.train, np.arange(len(source.train.labels))), (source.test, np.arange(len(source.test.labels)))


def _stratified_split(whole: LabelledImages, test_fraction: float, seed: int) -> tuple[Part, Part]:
    positions = np.arange(len(whole.labels))
    split = train_test_split(positions, test_size=test_fraction, random_state=seed, stratify=whole.labels)
    train_rows, test_rows = (np.sort(rows) for rows in split)
    return (whole.subset(train_rows), train_rows), (whole.subset(test_rows), test_rows)


def _split_table(split: str, part: LabelledImages, source_rows: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "split": split,
            "index": np.arange(len(source_rows), dtype=np.int64),
            "source_index": source_rows.astype(np.int64),
            "original_label": part.labels,
            "class_name": np.asarray(part.class_names, dtype=object)[part.labels],
        }
    )
    if part.row_ids is not None:
        table = table.assign(row_id=part.row_ids)
    return table if part.paths is None else table.assign(path=list(part.paths))


def flip_labels(labels: np.ndarray, fraction: float, n_classes: int, seed: int) -> np.ndarray:
    """Flip ``round(fraction * n)`` labels, chosen uniformly, each to a uniformly chosen *other* class."""
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    chosen = rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)
    shift = rng.integers(1, n_classes, size=len(chosen))
    noisy[chosen] = (labels[chosen] + shift) % n_classes
    return noisy


def plant_label_noise(
    examples: pd.DataFrame, dataset: DatasetParams
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Flip ``dataset.label_noise`` of the training labels (seeded by ``dataset.seed``).

    Returns the completed ``examples`` table (adds ``label``, the label used for training,
    and ``noisy``, after ``original_label``), the training labels and the test labels.
    """
    n_classes = int(examples["original_label"].max()) + 1
    is_train = (examples["split"] == "train").to_numpy()
    labels = examples["original_label"].to_numpy().copy()
    labels[is_train] = flip_labels(labels[is_train], dataset.label_noise, n_classes, dataset.seed)
    examples = examples.assign(label=labels, noisy=labels != examples["original_label"].to_numpy())
    examples = examples[KEY_COLUMNS + [c for c in examples.columns if c not in KEY_COLUMNS]]
    logger.info("planted %d noisy training labels", int(examples["noisy"].sum()))
    return examples, labels[is_train], labels[~is_train]
