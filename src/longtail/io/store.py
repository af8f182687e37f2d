"""``ShardStoreDataset``: the shard store's location as a catalog entry, so that the
lineage shows where trained shards live. Loading gives the folder; the training node
opens the experiment's store inside it (``longtail.shards.ShardStore``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError


class ShardStoreDataset(AbstractDataset[None, Path]):
    """A folder of per-experiment shard stores (shared storage when training on a cluster)."""

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> Path:
        self._path.mkdir(parents=True, exist_ok=True)
        return self._path.resolve()

    def save(self, data: None) -> None:
        raise DatasetError(f"the shard store {self._path} is written shard by shard by the training node")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
