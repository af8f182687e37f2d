"""Removal: the removal curve of the paper."""

from kedro.pipeline import Node, Pipeline

from .nodes import run_removal_experiment


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                run_removal_experiment,
                [
                    "train_images",
                    "train_labels",
                    "test_images",
                    "test_labels",
                    "memorization_scores",
                    "params:removal",
                    "params:training",
                ],
                ["removal_curve", "removal_model_runs"],
                name="run_removal_experiment",
            )
        ]
    )
