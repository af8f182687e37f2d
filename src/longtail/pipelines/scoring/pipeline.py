"""Scoring: memorization scores and influence pairs from the stored training outputs, and the
pairs the chosen selection reports."""

from kedro.pipeline import Node, Pipeline

from .nodes import published_pairs, report_pairs, score_influence, score_memorization, summarize_scores


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                score_memorization,
                ["subset_masks", "train_correct", "train_true_prob", "examples"],
                "memorization_scores",
                name="score_memorization",
            ),
            Node(
                score_influence,
                ["subset_masks", "test_correct", "memorization_scores", "examples", "params:scoring"],
                "influence_pairs",
                name="score_influence",
            ),
            Node(report_pairs, ["influence_pairs", "params:scoring"], "reported_pairs", name="report_pairs"),
            Node(published_pairs, "reported_pairs", "high_influence_pairs", name="published_pairs"),
            Node(
                summarize_scores,
                ["memorization_scores", "influence_pairs", "reported_pairs", "params:scoring"],
                "scoring_metrics",
                name="summarize_scores",
            ),
        ]
    )
