"""Custom Kedro datasets: safe array files, atomic tables and text."""

from longtail.io.arrays import LazyArray, NpyDataset, NpzDataset
from longtail.io.store import ShardStoreDataset
from longtail.io.tables import OptionalParquetDataset, ParquetDataset
from longtail.io.text import TextDataset

__all__ = ["LazyArray", "NpyDataset", "NpzDataset", "OptionalParquetDataset", "ParquetDataset", "ShardStoreDataset", "TextDataset"]
