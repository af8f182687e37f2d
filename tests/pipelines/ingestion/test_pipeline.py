"""The ingestion pipeline through Kedro's runner, and the whole study on a user's image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from longtail.params import DatasetParams
from longtail.pipelines.ingestion import create_pipeline
from tests.sources.fakes import write_class_folder, write_mnist
from tests.test_study import catalog, run_study

OUTPUTS = {"train_images", "test_images", "train_labels", "test_labels", "examples"}


def test_pipeline_turns_mnist_files_into_the_documented_outputs(tmp_path: Path) -> None:
    written = write_mnist(tmp_path, "FashionMNIST")
    dataset = {"name": "fashion_mnist", "root": str(tmp_path), "test_fraction": 0.2, "seed": 0, "label_noise": 0.2}
    data = DataCatalog({"params:dataset": MemoryDataset(DatasetParams.model_validate(dataset))})
    outputs = {name: ds.load() for name, ds in SequentialRunner().run(create_pipeline(), data).items()}
    assert set(outputs) == OUTPUTS
    assert outputs["train_images"].shape == (30, 1, 28, 28) and outputs["test_images"].shape == (10, 1, 28, 28)
    assert outputs["train_labels"].dtype == outputs["test_labels"].dtype == np.int64
    np.testing.assert_array_equal(outputs["test_labels"], written.test_labels)
    assert (outputs["train_labels"] != written.train_labels).sum() == 6  # 20% of 30 flipped
    assert outputs["examples"]["class_name"].iloc[0] == "T-shirt/top"


def test_the_whole_study_runs_on_an_image_folder_and_shows_its_images(project: Path) -> None:
    images = project / "my_images"
    write_class_folder(images, {"circle": 20, "square": 20, "star": 20}, size=(9, 9))
    dataset = {"name": "image_folder", "root": str(images), "image_size": 8}
    run_study(project, runtime_params={"dataset": dataset, "training": {"epochs": 2}, "sampling": {"n_models": 8}})
    examples = catalog(project).load("examples")
    assert len(examples) == 60 and set(examples["class_name"]) == {"circle", "square", "star"}
    assert examples["path"].str.match(r"^(circle|square|star)/img\d{3}\.png$").all()
    assert catalog(project).load("train_images").shape[1:] == (3, 8, 8)
    for name in ("memorization_grid", "influence_pairs", "memorization_histogram", "removal_curve"):
        figures = list((project / "data/08_reporting" / f"{name}.png").glob("*/*.png"))
        assert len(figures) == 1 and figures[0].read_bytes()[:4] == b"\x89PNG", name
