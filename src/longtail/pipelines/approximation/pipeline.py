"""Approximation (not part of ``__default__``): ``kedro run --pipelines approximation`` after
``training``."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    combine_approximations,
    estimate_from_full_runs,
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
                ["subset_model_memorization", "subset_model_influence"],
                name="estimate_from_subset_models",
            ),
            Node(
                estimate_from_full_runs,
                [*SPLITS, "subset_model_seconds", "params:training", "params:sampling", "params:approximation"],
                ["full_run_memorization", "full_run_influence"],
                name="estimate_from_full_runs",
            ),
            Node(
                combine_approximations,
                ["subset_model_memorization", "full_run_memorization", "subset_model_influence", "full_run_influence"],
                ["approximate_memorization", "approximate_influence"],
                name="combine_approximations",
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
