"""Project hooks: parameter validation before a run, matching inputs before each node, and
MLflow artefacts after each save."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset, DataCatalog, DatasetError
from kedro.pipeline import Pipeline

from longtail.params import TrackingParams, parse, validate_parameters
from longtail.study import TRAINING_RESULTS, MismatchedInputs, mismatched_inputs
from longtail.tracking import TrackingUnavailable, server_answers

logger = logging.getLogger(__name__)


class ParameterValidationHook:
    """Checks every parameter before the first node runs, so nothing is trained or written
    with a configuration that would fail later. It runs first among the hooks, so kedro-mlflow
    has not opened a run yet when the parameters are refused."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        validate_parameters(catalog.load("parameters"))


class MlflowArtifactsHook:
    """Logs the file a dataset has just saved as an artefact of the active MLflow run, for
    the catalog entries whose metadata says ``mlflow: {artifact_path: <folder>}``.

    The datasets stay plain versioned Kedro datasets (one save version per run, loadable by
    version); only the file of this run's version is logged.
    """

    def __init__(self) -> None:
        self._catalog: DataCatalog | None = None

    @hook_impl
    def after_catalog_created(self, catalog: DataCatalog) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if self._catalog is None or mlflow.active_run() is None:
            return
        dataset = self._catalog.get(dataset_name)
        folder = ((getattr(dataset, "metadata", None) or {}).get("mlflow") or {}).get("artifact_path")
        if folder is None:
            return
        mlflow.log_artifact(str(saved_path(dataset)), artifact_path=folder)


def saved_path(dataset: Any) -> Any:
    """The file that the dataset's last save wrote (the current save version's file)."""
    if isinstance(dataset, AbstractVersionedDataset) and dataset._version is not None:
        return dataset._get_versioned_path(dataset.resolve_save_version())
    return dataset._filepath


class TrackingAvailabilityHook:
    """Before anything runs (and before kedro-mlflow sets up its run), checks that the
    tracking server answers. If not: with ``tracking.required`` the run stops, naming the
    URI; without it, MLflow is pointed at a local SQLite store for the whole run, whose runs
    ``python -m longtail.tracking upload`` copies to the server later."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        params = parse(TrackingParams, context.params.get("tracking", {}), "tracking")
        uri = context.config_loader["mlflow"]["server"]["mlflow_tracking_uri"]
        problem = server_answers(uri, params.timeout_s)
        if problem is None:
            return
        if params.required:
            raise TrackingUnavailable(
                f"the MLflow tracking server {uri} does not answer ({problem}). Start it, point "
                "MLFLOW_TRACKING_URI elsewhere, or set tracking.required: false to train anyway "
                "and keep the runs in a local store for a later upload."
            )
        offline = f"sqlite:///{(Path(context.project_path) / params.offline_store).resolve()}"
        logger.warning("MLflow server %s does not answer (%s): keeping runs in %s", uri, problem, offline)
        os.environ["MLFLOW_TRACKING_URI"] = offline


class TrainingProvenanceHook:
    """Before a node that reads the subset masks together with training results (scoring,
    diagnostics, removal, export), checks that they belong together: that their content is
    what ``training_provenance`` recorded when training produced them. Otherwise, e.g. after
    ``sampling`` ran with a new seed but training failed, it stops the run with one message
    naming each artefact and its version, instead of scoring new masks against old models."""

    @hook_impl
    def before_node_run(self, node: Any, catalog: DataCatalog, inputs: dict[str, Any]) -> None:
        checked = {name: inputs[name] for name in ("subset_masks", *TRAINING_RESULTS) if name in inputs}
        if "subset_masks" not in checked or len(checked) < 2 or "training_provenance" not in catalog:
            return
        try:
            provenance = catalog.load("training_provenance")
        except DatasetError:
            provenance = {}
        mismatched = mismatched_inputs(checked, provenance)
        if mismatched:
            raise MismatchedInputs(_mismatch_message(node.name, catalog, sorted(checked), mismatched))


def _mismatch_message(node: str, catalog: DataCatalog, names: list[str], mismatched: list[str]) -> str:
    described = ", ".join(f"{name} (version {_load_version(catalog, name)})" for name in names)
    return (
        f"node {node!r} would combine {described}, which were not produced together: "
        f"{', '.join(mismatched)} differ from what training recorded in training_provenance "
        f"(version {_load_version(catalog, 'training_provenance')}). Rerun training on the current "
        "masks (kedro run --pipelines training; stored models are reused), or pass matching "
        "versions with --load-versions."
    )


def _load_version(catalog: DataCatalog, name: str) -> str:
    dataset = catalog.get(name)
    if isinstance(dataset, AbstractVersionedDataset):
        try:
            return dataset.resolve_load_version() or "none"
        except DatasetError:
            return "none saved"
    return "unversioned"
