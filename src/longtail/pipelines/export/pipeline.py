"""Export (not part of ``__default__``): ``kedro run --pipelines export``."""

from kedro.pipeline import Node, Pipeline

from .nodes import class_influence, influence_matrix_file, published_estimates


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                influence_matrix_file,
                ["subset_masks", "test_correct", "params:scoring"],
                "influence_matrix",
                name="export_influence_matrix",
            ),
            Node(
                published_estimates,
                ["memorization_scores", "influence_matrix"],
                "published_estimates",
                name="export_published_estimates",
            ),
            Node(
                class_influence,
                ["subset_masks", "test_correct", "examples", "params:scoring"],
                "class_influence",
                name="export_class_influence",
            ),
        ]
    )
