"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 read from small files in their official formats."""

from __future__ import annotations

import pickle
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from longtail.sources import NAMES, DatasetFilesMissing, InvalidDataset, load_source
from longtail.sources.torchvision_sets import read_cifar_pickle
from tests.sources.fakes import Written, pickle_batch, write_cifar10, write_cifar100, write_mnist

WRITERS = {
    "mnist": lambda root: write_mnist(root, "MNIST"),
    "fashion_mnist": lambda root: write_mnist(root, "FashionMNIST"),
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
}
FOLDERS = {
    "mnist": "MNIST/raw",
    "fashion_mnist": "FashionMNIST/raw",
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
}
FIRST_CLASS = {"mnist": "0 - zero", "fashion_mnist": "T-shirt/top", "cifar10": "class0", "cifar100": "fine0"}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: every URL torchvision opens fails as it does on a machine without internet."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.parametrize("name", list(WRITERS))
def test_official_splits_load_as_written(tmp_path: Path, name: str) -> None:
    written: Written = WRITERS[name](tmp_path)
    source = load_source(name, tmp_path)
    for part, (pixels, labels) in zip((source.train, source.test), written.splits(), strict=True):
        assert part.images.dtype == np.float32 and part.images.shape == pixels.shape
        np.testing.assert_array_equal(part.images, pixels / np.float32(255))
        np.testing.assert_array_equal(part.labels, labels)
        assert part.paths is None
    assert len(source.class_names) == (100 if name == "cifar100" else 10)
    assert source.class_names[0] == FIRST_CLASS[name]


@pytest.mark.parametrize("download", [False, True])
@pytest.mark.parametrize("name", list(WRITERS))
def test_missing_files_give_a_message_naming_dataset_folder_and_remedy(
    tmp_path: Path, offline: None, name: str, download: bool
) -> None:
    with pytest.raises(DatasetFilesMissing) as error:
        load_source(name, tmp_path / "empty", download=download)
    message = str(error.value)
    assert f"dataset {name!r}" in message
    assert str((tmp_path / "empty" / FOLDERS[name]).resolve()) in message
    remedy = "check the network connection" if download else "set `dataset.download: true`"
    assert remedy in message and "or point `dataset.root` at the folder that holds" in message
    assert ("downloading failed (" in message) == download
    shown_context = error.value.__context__ is not None and not error.value.__suppress_context__
    assert error.value.__cause__ is None and not shown_context  # no torchvision traceback attached


def test_present_files_are_not_downloaded_again(tmp_path: Path, offline: None) -> None:
    write_cifar10(tmp_path)  # md5 differs from the official files: torchvision's own check would re-download
    assert len(load_source("cifar10", tmp_path, download=True).train.labels) == 20


def test_a_partly_present_dataset_names_the_missing_files(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte").unlink()
    expected = r"files missing from .*MNIST/raw: t10k-labels-idx1-ubyte; dataset.download is false"
    with pytest.raises(DatasetFilesMissing, match=expected):
        load_source("mnist", tmp_path)


def test_a_truncated_idx_file_is_named(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    path = tmp_path / "MNIST/raw/train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InvalidDataset, match="MNIST/raw: unreadable IDX files"):
        load_source("mnist", tmp_path)


def test_cifar_pickles_may_hold_nothing_but_arrays(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self) -> tuple:
            return (print, ("this must never run",))

    pickle_batch(tmp_path / "evil", {"data": Payload()})
    expected = r"evil: not a CIFAR python batch \(refused to load \w+\.print: only numpy arrays"
    with pytest.raises(InvalidDataset, match=expected):
        read_cifar_pickle(tmp_path / "evil")


def test_cifar_batches_pickled_by_numpy_1_load(tmp_path: Path) -> None:
    """The official files name ``numpy.core.multiarray``; numpy 2 writes ``numpy._core``."""
    data = np.arange(12, dtype=np.uint8).reshape(2, 6)
    pickled = pickle.dumps({"data": data}, protocol=2)
    (tmp_path / "batch").write_bytes(pickled.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    np.testing.assert_array_equal(read_cifar_pickle(tmp_path / "batch")["data"], data)


def test_a_cifar_batch_of_the_wrong_shape_is_named(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    pickle_batch(tmp_path / "cifar-10-batches-py/data_batch_3", {"data": np.zeros((2, 784), np.uint8), "labels": [0, 1]})
    with pytest.raises(InvalidDataset, match=r"data_batch_3: expected 'data' uint8 \(n, 3072\)"):
        load_source("cifar10", tmp_path)


def test_every_dataset_name_is_allowed_by_the_parameters() -> None:
    from longtail.params import DATASETS  # noqa: PLC0415

    assert set(NAMES) == set(DATASETS)


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        load_source("svhn")
