"""Custom Kedro datasets: safe array files and atomic tables."""

from longtail.io.arrays import NpyDataset
from longtail.io.tables import ModelRunsDataset, ParquetDataset

__all__ = ["ModelRunsDataset", "NpyDataset", "ParquetDataset"]
