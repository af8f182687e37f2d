"""Ingestion: source dataset → train/test arrays and the ``examples`` table."""

from kedro.pipeline import Node, Pipeline

from .nodes import load_dataset, plant_label_noise, split_dataset


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(load_dataset, "params:dataset", ["source_images", "source_labels"], name="load_dataset"),
            Node(
                split_dataset,
                ["source_images", "source_labels", "params:dataset"],
                ["train_images", "test_images", "clean_examples"],
                name="split_dataset",
            ),
            Node(
                plant_label_noise,
                ["clean_examples", "params:dataset"],
                ["examples", "train_labels", "test_labels"],
                name="plant_label_noise",
            ),
        ]
    )
