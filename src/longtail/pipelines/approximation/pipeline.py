"""Approximation (not part of ``__default__``): ``kedro run --pipelines approximation`` after
``training``."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    estimate_from_subset_models,
    measure_approximations,
    plot_approximations,
    summarize_approximations,
    time_subset_model,
)

SPLITS = ["train_images", "train_labels", "test_images", "test_labels"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(time_subset_model, [*SPLITS, "subset_masks", "params:training"], "subset_model_seconds", name="time_subset_model"),
            Node(
                estimate_from_subset_models,
                [
                    "subset_masks",
                    "train_correct",
                    "test_correct",
                    "train_margin",
                    "test_margin",
                    "train_labels",
                    "test_labels",
                    "subset_model_seconds",
                    "params:approximation",
                    "params:scoring",
                ],
                ["approximate_memorization", "approximate_influence"],
                name="estimate_from_subset_models",
            ),
            Node(
                measure_approximations,
                [
                    "approximate_memorization",
                    "approximate_influence",
                    "subset_masks",
                    "train_correct",
                    "test_correct",
                    "train_labels",
                    "test_labels",
                    "params:scoring",
                ],
                "approximation_agreement",
                name="measure_approximations",
            ),
            Node(plot_approximations, "approximation_agreement", "approximation_figure", name="plot_approximations"),
            Node(summarize_approximations, "approximation_agreement", "approximation_metrics", name="summarize_approximations"),
        ]
    )
