"""Reporting: figures of the scores, the influence pairs and the removal curve."""

from kedro.pipeline import Node, Pipeline

from .nodes import plot_influence_pairs, plot_memorization_grid, plot_memorization_histogram, plot_removal_curve


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(plot_memorization_histogram, "memorization_scores", "memorization_histogram", name="plot_memorization_histogram"),
            Node(
                plot_memorization_grid,
                ["train_images", "memorization_scores", "examples", "params:reporting"],
                "memorization_grid",
                name="plot_memorization_grid",
            ),
            Node(
                plot_influence_pairs,
                [
                    "train_images",
                    "test_images",
                    "train_labels",
                    "test_labels",
                    "reported_pairs",
                    "examples",
                    "params:scoring",
                    "params:reporting",
                ],
                "influence_pairs_figure",
                name="plot_influence_pairs",
            ),
            Node(plot_removal_curve, "removal_curve", "removal_curve_figure", name="plot_removal_curve"),
        ]
    )
