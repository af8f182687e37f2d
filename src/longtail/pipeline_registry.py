"""Project pipelines: the stages of the study, and ``__default__`` running them in order."""

from __future__ import annotations

from pathlib import Path

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


def pipeline_names() -> list[str]:
    """The names ``kedro run --pipelines`` takes: each folder that ``find_pipelines`` looks in
    (``longtail/pipelines/<name>``), and ``__default__``; found without importing them."""
    folders = (Path(__file__).parent / "pipelines").iterdir()
    found = [folder.name for folder in folders if folder.is_dir() and not folder.name.startswith((".", "__"))]
    return ["__default__", *sorted(found)]
