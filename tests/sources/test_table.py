"""The table source: parquet and CSV files, their columns and every way they can be bad."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_wine

from longtail.nets.loop import prepare_data
from longtail.params import DatasetParams, InvalidParameters
from longtail.pipelines.ingestion.nodes import load_and_split
from longtail.sources import DatasetFilesMissing, InvalidDataset, TableSpec, load_source
from tests.conftest import checked_block


def wine_frame() -> pd.DataFrame:
    """scikit-learn's wine table with string labels ('class_0' ...), in a shuffled row order."""
    bunch = load_wine(as_frame=True)
    frame = bunch.frame.assign(target=[f"class_{t}" for t in bunch.target])
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture
def wine(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    frame = wine_frame()
    frame.to_parquet(tmp_path / "wine.parquet")
    return frame, tmp_path / "wine.parquet"


def load(path: Path, **columns: object):
    return load_source("table", table=TableSpec(path, **{"label_column": "target", **columns}))


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_rows_become_examples_of_one_pixel_per_feature(tmp_path: Path, suffix: str) -> None:
    frame = wine_frame()
    path = tmp_path / f"wine.{suffix}"
    frame.to_parquet(path) if suffix == "parquet" else frame.to_csv(path, index=False)
    source = load(path)
    features = frame.drop(columns="target")
    assert source.test is None
    assert source.train.images.shape == (len(frame), features.shape[1], 1, 1)
    np.testing.assert_allclose(source.train.images[:, :, 0, 0], features.to_numpy(np.float32), rtol=1e-6)
    assert source.class_names == ("class_0", "class_1", "class_2")
    assert [source.class_names[label] for label in source.train.labels] == frame["target"].tolist()
    np.testing.assert_array_equal(source.train.row_ids, np.arange(len(frame)))


def test_the_trainer_standardises_each_feature_by_the_training_rows(wine) -> None:
    frame, path = wine
    source = load(path)
    images, labels = source.train.images, source.train.labels
    data = prepare_data(
        images[:100], labels[:100], {"test": (images[100:], labels[100:])}, 3, torch.device("cpu"), torch.float32
    )
    features = frame.drop(columns="target").to_numpy(np.float64)
    mean, std = features[:100].mean(0), features[:100].std(0, ddof=1)
    np.testing.assert_allclose(data.images[:, :, 0, 0].numpy(), (features[:100] - mean) / std, atol=1e-4)
    np.testing.assert_allclose(data.eval_sets["test"][0][:, :, 0, 0].numpy(), (features[100:] - mean) / std, atol=1e-4)


def test_feature_and_split_columns_are_honoured(tmp_path: Path) -> None:
    frame = wine_frame().assign(part=lambda f: np.where(np.arange(len(f)) % 4 == 0, "test", "train"), name="wine")
    frame.to_csv(tmp_path / "wine.csv", index=False)
    source = load(tmp_path / "wine.csv", feature_columns=("alcohol", "magnesium"), split_column="part")
    assert source.train.images.shape[1:] == (2, 1, 1)
    np.testing.assert_array_equal(source.test.row_ids, np.arange(0, len(frame), 4))
    np.testing.assert_allclose(source.test.images[:, 1, 0, 0], frame["magnesium"].to_numpy()[::4])
    assert len(source.train.labels) + len(source.test.labels) == len(frame)


def test_ingestion_keeps_the_file_row_and_the_class_names(wine) -> None:
    frame, path = wine
    dataset = DatasetParams(name="table", path=str(path), label_column="target", test_fraction=0.25, seed=0, label_noise=0.0)
    train_images, test_images, examples = load_and_split(dataset)
    assert len(train_images) + len(test_images) == len(frame) and train_images.shape[1:] == (13, 1, 1)
    assert (examples["row_id"] == examples["source_index"]).all()  # split by test_fraction: from the whole file
    np.testing.assert_array_equal(examples["class_name"], frame["target"].to_numpy()[examples["row_id"]])
    train_rows = examples.loc[examples["split"] == "train", "row_id"].to_numpy()
    np.testing.assert_allclose(train_images[:, 0, 0, 0], frame["alcohol"].to_numpy()[train_rows], rtol=1e-6)


def bad(tmp_path: Path, edit, **columns: object) -> str:
    frame = wine_frame().head(20).assign(part="train")
    frame.loc[15:, "part"] = "test"
    frame = edit(frame.astype({"alcohol": object, "part": object}))
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InvalidDataset) as error:
        load(tmp_path / "bad.csv", **columns)
    return str(error.value)


def test_missing_and_non_numeric_features_name_file_column_and_rows(tmp_path: Path) -> None:
    def edit(frame):
        frame.loc[[3, 7], "alcohol"] = None
        frame.loc[5, "magnesium"] = None
        frame.loc[9, "alcohol"] = "strong"
        return frame

    message = bad(tmp_path, edit, split_column="part")
    assert f"{tmp_path / 'bad.csv'}: column 'alcohol', row 3, 7: missing value" in message
    assert "column 'magnesium', row 5: missing value" in message
    assert "column 'alcohol', row 9: 'strong' is not a number" in message


def test_a_single_class_a_missing_label_and_other_split_values_are_refused(tmp_path: Path) -> None:
    assert "column 'target' holds a single class ('class_0'); at least 2" in bad(tmp_path, lambda f: f.assign(target="class_0"))
    assert "column 'target', row 4: missing label" in bad(tmp_path, lambda f: f.assign(target=f["target"].mask(f.index == 4)))

    def edit(frame):
        frame.loc[2, "part"] = "valid"
        frame.loc[6, "part"] = None
        return frame

    message = bad(tmp_path, edit, split_column="part")
    assert "column 'part', row 2, 6: 'valid' is neither 'train' nor 'test'" in message
    assert "has no 'test' rows" in bad(tmp_path, lambda f: f.assign(part="train"), split_column="part")


def test_unknown_columns_files_and_types_are_named(tmp_path: Path, wine) -> None:
    _, path = wine
    with pytest.raises(InvalidDataset, match=r"no column 'colour'; the file's columns are \['alcohol'"):
        load(path, feature_columns=("colour",))
    with pytest.raises(InvalidDataset, match="feature columns .* other than"):
        load(path, feature_columns=("target",))
    with pytest.raises(DatasetFilesMissing, match="missing.parquet is not a file"):
        load(tmp_path / "missing.parquet")
    (tmp_path / "wine.xlsx").write_bytes(b"x")
    with pytest.raises(InvalidDataset, match="unknown file type '.xlsx'"):
        load(tmp_path / "wine.xlsx")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(InvalidDataset, match="broken.parquet: unreadable parquet file"):
        load(tmp_path / "broken.parquet")


def test_the_table_parameters_are_required_for_tables_and_refused_elsewhere() -> None:
    common = {"test_fraction": 0.2, "seed": 0, "label_noise": 0.0}
    with pytest.raises(InvalidParameters) as error:
        checked_block("dataset", {"name": "table", **common})
    assert "dataset.path=None: required for dataset.name 'table'" in str(error.value)
    assert "dataset.label_column=None: required for dataset.name 'table'" in str(error.value)
    with pytest.raises(InvalidParameters, match="dataset.split_column='part': only used by dataset.name 'table', not 'digits'"):
        checked_block("dataset", {"name": "digits", "split_column": "part", **common})
    table = {"name": "table", "path": "t.csv", "label_column": "y", **common}
    with pytest.raises(InvalidParameters, match=r"dataset.feature_columns=\[\]: must list at least one column"):
        checked_block("dataset", {**table, "feature_columns": []})
    assert checked_block("dataset", {**table, "feature_columns": ["a", "b"]}).feature_columns == ("a", "b")
