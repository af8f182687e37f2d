"""Diagnostics: how far to trust the scores, how many models are enough, and a fast proxy."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    compare_proxies,
    detect_label_noise,
    measure_agreement,
    measure_convergence,
    measure_subset_fit,
    plot_convergence,
    plot_label_noise_detection,
    summarize_diagnostics,
    train_proxy_models,
)

MODEL_OUTPUTS = ["subset_masks", "train_correct", "test_correct", "examples", "params:scoring", "params:diagnostics"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                train_proxy_models,
                [
                    "train_images",
                    "train_labels",
                    "test_images",
                    "test_labels",
                    "examples",
                    "params:training",
                    "params:diagnostics",
                ],
                ["proxy_scores", "proxy_model_runs"],
                name="train_proxy_models",
            ),
            Node(
                detect_label_noise,
                ["memorization_scores", "proxy_scores", "params:diagnostics"],
                "label_noise_detection",
                name="detect_label_noise",
            ),
            Node(
                plot_label_noise_detection,
                ["memorization_scores", "proxy_scores", "label_noise_detection"],
                "label_noise_detection_figure",
                name="plot_label_noise_detection",
            ),
            Node(measure_convergence, MODEL_OUTPUTS, "convergence", name="measure_convergence"),
            Node(measure_agreement, "convergence", "agreement", name="measure_agreement"),
            Node(plot_convergence, "convergence", "convergence_figure", name="plot_convergence"),
            Node(
                compare_proxies,
                ["memorization_scores", "proxy_scores", "params:scoring"],
                "proxy_agreement",
                name="compare_proxies",
            ),
            Node(
                measure_subset_fit,
                ["subset_masks", "train_correct", "examples", "params:training"],
                "subset_fit",
                name="measure_subset_fit",
            ),
            Node(
                summarize_diagnostics,
                ["label_noise_detection", "agreement", "convergence", "proxy_agreement", "subset_fit"],
                "diagnostics_metrics",
                name="summarize_diagnostics",
            ),
        ]
    )
