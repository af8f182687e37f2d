"""Reporting: figures of the scores, the influence pairs and the removal curve, and the study's
report (one self-contained HTML page)."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    plot_influence_pairs,
    plot_memorization_grid,
    plot_memorization_histogram,
    plot_removal_curve,
    write_study_report,
)


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
            Node(
                write_study_report,
                [
                    "run_context",  # given by longtail.hooks.RunContextHook
                    "examples",
                    "train_images",
                    "test_images",
                    "memorization_scores",
                    "influence_pairs",
                    "reported_pairs",
                    "subset_model_runs",
                    "training_provenance",
                    "removal_curve",
                    "agreement",
                    "convergence",
                    "label_noise_detection",
                    "params:dataset",
                    "params:sampling",
                    "params:training",
                    "params:scoring",
                    "params:reporting",
                    "approximation_agreement",  # empty until `kedro run --pipelines approximation` has run
                ],
                "study_report",
                name="write_study_report",
            ),
        ]
    )
