"""Custom Kedro datasets: safe array files and atomic tables."""

from longtail.io.arrays import LazyArray, NpyDataset, NpzDataset
from longtail.io.store import ShardStoreDataset
from longtail.io.tables import ParquetDataset

__all__ = ["LazyArray", "NpyDataset", "NpzDataset", "ParquetDataset", "ShardStoreDataset"]
