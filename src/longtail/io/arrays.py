"""``NpyDataset``: a versioned Kedro dataset for one numpy array in a ``.npy`` file.

Arrays are written atomically and read with ``allow_pickle=False``: loading never executes
code from a file, and object arrays are refused on save.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version
from kedro_datasets._typing import JSONPreview

from longtail.io.atomic import atomic_path


class NpyDataset(AbstractVersionedDataset[np.ndarray, np.ndarray]):
    """One array per file (``np.save`` format, no pickle), on the local filesystem."""

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(filepath=PurePosixPath(filepath), version=version)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "version": self._version}

    def load(self) -> np.ndarray:
        path = Path(self._get_load_path())
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise DatasetError(f"cannot read array file {path}: {error}") from error

    def save(self, data: np.ndarray) -> None:
        array = np.asarray(data)
        if array.dtype.hasobject:
            raise DatasetError(f"refusing to save an object array to {self._filepath}: it would need pickle")
        with atomic_path(self._get_save_path()) as temporary:
            with open(temporary, "wb") as handle:
                np.save(handle, array, allow_pickle=False)

    def _exists(self) -> bool:
        try:
            return Path(self._get_load_path()).exists()
        except DatasetError:
            return False

    def preview(self) -> JSONPreview:
        """Shape, dtype and value range, read from the memory-mapped file (for Kedro-Viz)."""
        array = np.load(Path(self._get_load_path()), mmap_mode="r", allow_pickle=False)
        summary = {"shape": list(array.shape), "dtype": str(array.dtype)}
        if array.size:
            summary.update(min=float(array.min()), max=float(array.max()), mean=float(array.mean()))
        return JSONPreview(json.dumps(summary))
