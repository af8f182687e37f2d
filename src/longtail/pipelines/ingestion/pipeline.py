"""Ingestion: source dataset → train/test arrays and the ``examples`` table."""

from kedro.pipeline import Node, Pipeline

from .nodes import load_and_split, plant_label_noise


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                load_and_split,
                "params:dataset",
                ["train_images", "test_images", "clean_examples"],
                name="load_and_split_dataset",
            ),
            Node(
                plant_label_noise,
                ["clean_examples", "params:dataset"],
                ["examples", "train_labels", "test_labels"],
                name="plant_label_noise",
            ),
        ]
    )
