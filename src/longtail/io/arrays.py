"""Versioned Kedro datasets for numpy arrays: one array per ``.npy`` file (``NpyDataset``),
or named arrays in one ``.npz`` file (``NpzDataset``).

Files are written atomically and read with ``allow_pickle=False``: loading never executes
code from a file, and object arrays are refused on save. An array too large for memory can be
saved as a ``LazyArray``, which fills a memory-mapped file block by block.
"""

from __future__ import annotations

import abc
import json
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from kedro.io.core import AbstractVersionedDataset, DatasetError, Version
from kedro_datasets._typing import JSONPreview

from longtail.io.atomic import atomic_path


@dataclass(frozen=True)
class LazyArray:
    """An array described by shape and dtype and produced by ``fill(out)``, which writes it
    into ``out`` (a memory-mapped file) piece by piece: it never needs to fit in memory."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fill: Callable[[np.ndarray], Any]


def _checked(name: str, array: Any) -> Any:
    if isinstance(array, LazyArray):
        return array
    array = np.asanyarray(array)
    if array.dtype.hasobject:
        raise DatasetError(f"refusing to save the object array {name!r}: it would need pickle")
    return array


def _write_npy(target: Path, array: np.ndarray | LazyArray) -> None:
    if isinstance(array, LazyArray):
        out = np.lib.format.open_memmap(target, mode="w+", dtype=array.dtype, shape=array.shape)
        array.fill(out)
        out.flush()
        del out
    else:
        with open(target, "wb") as handle:
            np.lib.format.write_array(handle, array, allow_pickle=False)


def _write_npz(target: Path, arrays: Mapping[str, np.ndarray | LazyArray]) -> None:
    """Like ``np.savez``, but each member is streamed (a memory map is copied in chunks) and
    a lazy member is first materialised in a memory-mapped scratch file beside the target."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            if isinstance(array, LazyArray):
                with tempfile.TemporaryDirectory(dir=target.parent) as folder:
                    scratch = Path(folder) / f"{name}.npy"
                    _write_npy(scratch, array)
                    _copy_member(archive, name, np.load(scratch, mmap_mode="r"))
            else:
                _copy_member(archive, name, array)


def _copy_member(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, array, allow_pickle=False)


class _ArrayFileDataset(AbstractVersionedDataset):
    """Local, versioned, atomic array files; subclasses say how to write and read them."""

    def __init__(
        self,
        *,
        filepath: str,
        mmap: bool = False,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(filepath=PurePosixPath(filepath), version=version)
        self._mmap = mmap
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "mmap": self._mmap, "version": self._version}

    def _exists(self) -> bool:
        try:
            return Path(self._get_load_path()).exists()
        except DatasetError:
            return False

    @abc.abstractmethod
    def _read(self, path: Path) -> Any: ...

    @abc.abstractmethod
    def _write(self, target: Path, data: Any) -> None: ...

    def load(self) -> Any:
        path = Path(self._get_load_path())
        try:
            return self._read(path)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
            raise DatasetError(f"cannot read array file {path}: {error}") from error

    def save(self, data: Any) -> None:
        with atomic_path(self._get_save_path()) as temporary:
            self._write(temporary, data)


class NpyDataset(_ArrayFileDataset):
    """One array per ``.npy`` file (no pickle); ``mmap: true`` loads it memory-mapped, read-only."""

    def _read(self, path: Path) -> np.ndarray:
        return np.load(path, mmap_mode="r" if self._mmap else None, allow_pickle=False)

    def _write(self, target: Path, data: np.ndarray | LazyArray) -> None:
        _write_npy(target, _checked(str(self._filepath), data))

    def preview(self) -> JSONPreview:
        """Shape, dtype and value range, read from the memory-mapped file (for Kedro-Viz)."""
        array = np.load(Path(self._get_load_path()), mmap_mode="r", allow_pickle=False)
        summary: dict[str, Any] = {"shape": list(array.shape), "dtype": str(array.dtype)}
        if array.size and array.size <= 10**8:
            summary.update(min=float(array.min()), max=float(array.max()), mean=float(array.mean()))
        return JSONPreview(json.dumps(summary))


class NpzDataset(_ArrayFileDataset):
    """Named arrays in one ``.npz`` file (no pickle), loaded as a dict of arrays."""

    def _read(self, path: Path) -> dict[str, np.ndarray]:
        if self._mmap:
            raise DatasetError(f"{path}: .npz members cannot be memory-mapped; use NpyDataset")
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}

    def _write(self, target: Path, data: Mapping[str, np.ndarray | LazyArray]) -> None:
        if not isinstance(data, Mapping):
            raise DatasetError(f"{self._filepath}: expected a mapping of names to arrays, got {type(data).__name__}")
        _write_npz(target, {name: _checked(name, array) for name, array in data.items()})
