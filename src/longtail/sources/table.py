"""Users' own tabular data: one row per example in a parquet or CSV file.

Every feature column becomes one channel of a 1x1 "image", so examples are float32
(N, F, 1, 1) arrays holding the file's values as they are. The trainer standardises each
channel with the training split's mean and standard deviation, which for this layout is
exactly per-feature standardisation by the training split. Labels may be numbers or strings;
the sorted distinct values become classes 0, 1, ..., and their text the class names. Rows are
numbered from 0 in file order (the header is not a row): the ``row_id`` of the ``examples``
table and the row every message names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from longtail.sources.base import DatasetFilesMissing, InvalidDataset, LabelledImages, Source, _listed

SUFFIXES = (".parquet", ".csv")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class TableSpec:
    """Where the table is and which columns hold what (``dataset.path``, ``label_column``, ...)."""

    path: Path | str
    label_column: str
    feature_columns: tuple[str, ...] | None = None  # None = every column but the label and split columns
    split_column: str | None = None  # 'train' / 'test' per row; None = the caller splits


def load_table(spec: TableSpec) -> Source:
    """The table's rows as examples; with ``split_column``, its train and test rows as the split.

    Every problem found is reported at once (``InvalidDataset``), each naming the file, the
    column and the rows: a missing column, missing or non-numeric or infinite feature values,
    a missing label, a label column with a single class, split values other than train/test.
    """
    path = Path(spec.path)
    frame = _read(path)
    features = _feature_columns(frame, spec, path)
    problems = [problem for column in features for problem in _feature_problems(frame[column], path)]
    problems += _label_problems(frame[spec.label_column], path)
    if spec.split_column is not None:
        problems += _split_problems(frame[spec.split_column], path)
    if problems:
        raise InvalidDataset(problems)
    values = np.array(frame[list(features)].apply(pd.to_numeric), dtype=np.float32)  # writable: torch shares it
    labels, class_names = _classes(frame[spec.label_column])
    whole = LabelledImages(values[:, :, None, None], labels, class_names, row_ids=np.arange(len(frame), dtype=np.int64))
    if spec.split_column is None:
        return Source(whole)
    split = frame[spec.split_column].to_numpy()
    return Source(*(whole.subset(np.flatnonzero(split == name)) for name in SPLITS))


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetFilesMissing(
            f"dataset 'table': {path.resolve()} is not a file. Set `dataset.path` to a parquet or CSV file "
            "(relative paths start at the project folder)."
        )
    if path.suffix.lower() not in SUFFIXES:
        raise InvalidDataset([f"{path}: unknown file type {path.suffix!r}; allowed: {', '.join(SUFFIXES)}"])
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise InvalidDataset([f"{path}: unreadable {path.suffix[1:]} file ({error})"]) from None
    if frame.empty:
        raise InvalidDataset([f"{path}: no rows"])
    return frame.set_axis(frame.columns.map(str), axis=1).reset_index(drop=True)


def _feature_columns(frame: pd.DataFrame, spec: TableSpec, path: Path) -> tuple[str, ...]:
    """The feature columns, after checking that every named column exists."""
    special = [spec.label_column] + ([spec.split_column] if spec.split_column is not None else [])
    named = [*special, *(spec.feature_columns or ())]
    missing = [column for column in named if column not in frame.columns]
    if missing:
        raise InvalidDataset(
            [f"{path}: no column {column!r}; the file's columns are {list(frame.columns)}" for column in missing]
        )
    features = spec.feature_columns or tuple(c for c in frame.columns if c not in special)
    overlap = [column for column in features if column in special]
    if overlap or not features:
        raise InvalidDataset(
            [f"{path}: feature columns {list(features)} must be at least one column other than {special}"]
        )
    return tuple(features)


def _where(path: Path, column: str, rows: np.ndarray) -> str:
    return f"{path}: column {column!r}, row {_listed(rows)}"


def _feature_problems(column: pd.Series, path: Path) -> list[str]:
    numbers = pd.to_numeric(column.astype(object) if not pd.api.types.is_numeric_dtype(column) else column, errors="coerce")
    missing = column.isna().to_numpy()
    text = np.flatnonzero(numbers.isna().to_numpy() & ~missing)
    found = []
    if missing.any():
        found.append(f"{_where(path, column.name, np.flatnonzero(missing))}: missing value")
    if len(text):
        found.append(
            f"{_where(path, column.name, text)}: {column.iloc[text[0]]!r} is not a number; features must be "
            "numeric (leave this column out with dataset.feature_columns)"
        )
    infinite = np.flatnonzero(np.isinf(numbers.to_numpy(dtype=float, na_value=0.0)))
    if len(infinite):
        found.append(f"{_where(path, column.name, infinite)}: infinite value")
    return found


def _label_problems(column: pd.Series, path: Path) -> list[str]:
    missing = np.flatnonzero(column.isna().to_numpy())
    if len(missing):
        return [f"{_where(path, column.name, missing)}: missing label"]
    classes = column.astype(str).unique()
    if len(classes) < 2:
        return [f"{path}: column {column.name!r} holds a single class ({classes[0]!r}); at least 2 are needed"]
    return []


def _split_problems(column: pd.Series, path: Path) -> list[str]:
    other = np.flatnonzero(~column.isin(SPLITS).to_numpy())
    if len(other):
        return [f"{_where(path, column.name, other)}: {column.iloc[other[0]]!r} is neither 'train' nor 'test'"]
    return [f"{path}: column {column.name!r} has no {name!r} rows" for name in SPLITS if not (column == name).any()]


def _classes(column: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels 0..C-1 in the sorted order of the distinct values (numeric order for numbers), and their names."""
    values = column.to_numpy()
    if pd.api.types.is_float_dtype(column) and np.all(values == np.round(values)):
        values = values.astype(np.int64)  # 1.0 and 2.0 are classes "1" and "2"
    elif not pd.api.types.is_numeric_dtype(column):
        values = column.astype(str).to_numpy()
    uniques, labels = np.unique(values, return_inverse=True)
    return labels.astype(np.int64), tuple(str(value) for value in uniques)
