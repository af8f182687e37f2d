"""Parquet tables written atomically, and the table of trained models mirrored to MLflow."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from kedro_datasets.pandas import ParquetDataset as _KedroParquetDataset

from longtail.io.atomic import atomic_path
from longtail.tracking import log_model_runs


class ParquetDataset(_KedroParquetDataset):
    """kedro-datasets' ParquetDataset, but a local save is atomic (temporary file, then rename)."""

    def save(self, data: pd.DataFrame) -> None:
        if self._protocol != "file":
            super().save(data)
            return
        with atomic_path(self._get_save_path()) as temporary:
            data.to_parquet(temporary, **self._save_args)
        self._invalidate_cache()


class ModelRunsDataset(ParquetDataset):
    """One row per trained model. Saving writes the table and logs each row as an MLflow
    child run of the active run (see ``longtail.tracking.log_model_runs``)."""

    def save(self, data: pd.DataFrame) -> None:
        super().save(data)
        log_model_runs(data, source=Path(str(self._filepath)).stem)
