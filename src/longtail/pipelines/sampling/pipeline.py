"""Sampling: the subset masks of the subset models."""

from kedro.pipeline import Node, Pipeline

from .nodes import draw_subset_masks


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [Node(draw_subset_masks, ["train_labels", "params:sampling"], "subset_masks", name="draw_subset_masks")]
    )
