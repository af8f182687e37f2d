"""Rescoring (not part of ``__default__``): scores from published model runs instead of
trained ones. Put the runs at ``data/01_raw/published_runs.npz`` and
``kedro run --pipelines rescoring``."""

from kedro.pipeline import Node, Pipeline

from ..scoring.nodes import import_published_runs
from ..scoring.pipeline import create_pipeline as create_scoring_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    importing = Node(
        import_published_runs,
        "published_runs",
        ["subset_masks", "train_correct", "train_true_prob", "test_correct", "examples"],
        name="import_published_runs",
    )
    return Pipeline([importing]) + create_scoring_pipeline()
