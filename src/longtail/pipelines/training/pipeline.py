"""Training: the subset models."""

from kedro.pipeline import Node, Pipeline

from longtail.study import TRAINING_RESULTS

from .nodes import train_subset_models


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                train_subset_models,
                [
                    "train_images",
                    "train_labels",
                    "test_images",
                    "test_labels",
                    "subset_masks",
                    "shard_store",
                    "params:training",
                    "params:sampling",
                ],
                [
                    *TRAINING_RESULTS,
                    "subset_model_runs",
                    "training_metrics",
                    "training_provenance",
                ],
                name="train_subset_models",
            )
        ]
    )
