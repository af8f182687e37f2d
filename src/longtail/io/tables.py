"""Parquet tables written atomically."""

from __future__ import annotations

import pandas as pd
from kedro_datasets.pandas import ParquetDataset as _KedroParquetDataset

from longtail.io.atomic import atomic_path


class ParquetDataset(_KedroParquetDataset):
    """kedro-datasets' ParquetDataset, but a local save is atomic (temporary file, then rename)."""

    def save(self, data: pd.DataFrame) -> None:
        if self._protocol != "file":
            super().save(data)
            return
        with atomic_path(self._get_save_path()) as temporary:
            data.to_parquet(temporary, **self._save_args)
        self._invalidate_cache()
