"""Custom Kedro datasets: safe array files and atomic tables."""

from longtail.io.arrays import NpyDataset
from longtail.io.store import ShardStoreDataset
from longtail.io.tables import ParquetDataset

__all__ = ["NpyDataset", "ParquetDataset", "ShardStoreDataset"]
