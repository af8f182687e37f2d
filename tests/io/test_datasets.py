"""Safe, atomic, versioned artefacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io.core import DatasetError, Version

from longtail.io import NpyDataset, OptionalParquetDataset, ParquetDataset
from longtail.io.atomic import atomic_path


def test_array_round_trip_keeps_dtype_and_values(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((3, 5)).astype(np.float32) > 0.5
    dataset = NpyDataset(filepath=str(tmp_path / "masks.npy"))
    dataset.save(data)
    loaded = dataset.load()
    assert loaded.dtype == np.bool_ and np.array_equal(loaded, data)


def test_versions_stay_loadable(tmp_path: Path) -> None:
    path = str(tmp_path / "a.npy")
    NpyDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save(np.arange(3))
    NpyDataset(filepath=path, version=Version(None, "2026-01-02T00.00.00.000Z")).save(np.arange(5))
    assert len(NpyDataset(filepath=path, version=Version(None, None)).load()) == 5
    old = NpyDataset(filepath=path, version=Version("2026-01-01T00.00.00.000Z", None)).load()
    assert np.array_equal(old, np.arange(3))


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    dataset = NpyDataset(filepath=str(tmp_path / "o.npy"))
    with pytest.raises(DatasetError, match="pickle"):
        dataset.save(np.array([{"a": 1}], dtype=object))
    assert not list(tmp_path.iterdir())


def test_corrupt_array_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, np.arange(1000))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match="bad.npy"):
        NpyDataset(filepath=str(path)).load()


def test_a_pickled_array_is_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "pickled.npy"
    np.save(path, np.array([{"payload": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match="pickle"):
        NpyDataset(filepath=str(path)).load()


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"partial")
            raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_table_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.parquet"
    dataset = ParquetDataset(filepath=str(path))
    dataset.save(pd.DataFrame({"a": [1, 2]}))

    def fail(self: pd.DataFrame, target: Path, **kwargs: object) -> None:
        Path(target).write_bytes(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail)
    with pytest.raises(DatasetError, match="disk full"):
        dataset.save(pd.DataFrame({"a": [3]}))
    monkeypatch.undo()
    assert dataset.load()["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_an_optional_table_loads_empty_until_its_first_version_is_saved(tmp_path: Path) -> None:
    path = str(tmp_path / "agreement.parquet")
    assert OptionalParquetDataset(filepath=path, version=Version(None, None)).load().empty
    table = pd.DataFrame({"method": ["fz-10"], "cost_models": [10.0]})
    OptionalParquetDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save(table)
    pd.testing.assert_frame_equal(OptionalParquetDataset(filepath=path, version=Version(None, None)).load(), table)
    with pytest.raises(DatasetError):  # a table that must be there still fails loudly
        ParquetDataset(filepath=str(tmp_path / "other.parquet"), version=Version(None, None)).load()
