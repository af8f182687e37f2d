"""Rescoring (not part of ``__default__``): scores and exports from published model runs
instead of trained ones. Put the runs at ``data/01_raw/published_runs.npz`` and
``kedro run --pipelines rescoring``. Everything it writes is namespaced ``rescoring.*``
(``data/07_model_output/rescoring/``), so it never replaces a study's masks, examples or
scores."""

from kedro.pipeline import Node, Pipeline

from ..export.pipeline import create_pipeline as create_export_pipeline
from ..scoring.nodes import import_published_runs
from ..scoring.pipeline import create_pipeline as create_scoring_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    importing = Node(
        import_published_runs,
        "published_runs",
        ["subset_masks", "train_correct", "train_true_prob", "test_correct", "examples"],
        name="import_published_runs",
    )
    return Pipeline(
        [importing, create_scoring_pipeline(), create_export_pipeline()],
        namespace="rescoring",
        inputs={"published_runs"},
        parameters={"scoring"},
    )
