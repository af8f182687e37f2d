"""Project pipelines: the stages of the study, and ``__default__`` running them in order."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

STAGES = ("ingestion", "sampling", "training", "scoring", "diagnostics", "removal", "reporting")


def register_pipelines() -> dict[str, Pipeline]:
    """Register each stage under its own name; ``__default__`` is their sum (Kedro orders it
    by data). ``kedro run --pipelines NAME`` makes Kedro discover only the stages asked for,
    in which case there is no ``__default__`` to build."""
    pipelines = find_pipelines(raise_errors=True)
    if all(name in pipelines for name in STAGES):
        pipelines["__default__"] = sum((pipelines[name] for name in STAGES), Pipeline([]))
    return pipelines
