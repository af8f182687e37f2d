"""Parquet tables written atomically."""

from __future__ import annotations

import numpy as np
import pandas as pd
from kedro_datasets._typing import TablePreview
from kedro_datasets.pandas import ParquetDataset as _KedroParquetDataset

from longtail.io.atomic import atomic_path


class ParquetDataset(_KedroParquetDataset):
    """kedro-datasets' ParquetDataset, but a local save is atomic (temporary file, then rename),
    and previews (Kedro-Viz) are JSON-safe when cells hold lists (e.g. per-epoch losses)."""

    def save(self, data: pd.DataFrame) -> None:
        if self._protocol != "file":
            super().save(data)
            return
        with atomic_path(self._get_save_path()) as temporary:
            data.to_parquet(temporary, **self._save_args)
        self._invalidate_cache()

    def preview(self, nrows: int = 5) -> TablePreview:
        table = super().preview(nrows)
        table["data"] = [[_plain(cell) for cell in row] for row in table["data"]]
        return table


class OptionalParquetDataset(ParquetDataset):
    """A table that a pipeline run on request writes and another reads when it is there: before
    the first save it loads as an empty DataFrame instead of failing (e.g. the study report
    reads ``approximation_agreement``, which only ``kedro run --pipelines approximation`` writes)."""

    def load(self) -> pd.DataFrame:
        return super().load() if self.exists() else pd.DataFrame()


def _plain(cell: object) -> object:
    return cell.tolist() if isinstance(cell, np.ndarray) else cell
