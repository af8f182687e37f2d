"""Project hooks: parameter validation before a run, matching inputs before each node, and
MLflow artefacts after each save."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset, DataCatalog, DatasetError
from kedro.pipeline import Node, Pipeline
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE
from pydantic import BaseModel

from longtail.params import InvalidParameters, StudyParams, validate_parameters
from longtail.shards import fingerprint
from longtail.study import TRAINING_RESULTS, MismatchedInputs, mismatched_inputs
from longtail.tracking import (
    PIPELINES_TAG,
    TrackingUnavailable,
    add_missing_experiment_tags,
    server_answers,
    study_run_name,
    study_summary,
)


class _LibraryWarningFilter(logging.Filter):
    """Drops the captured warning (Kedro logs warnings through ``py.warnings``) that
    kedro-mlflow's ``KedroPipelineModel``, a pyfunc model this project never logs, causes when
    it is imported: MLflow asks for type hints on its ``predict``. MLflow raises it under its
    own ``simplefilter("once")``, which overrides any ``warnings`` filter, so only the log
    record can be dropped; it is attached here, before this module imports kedro-mlflow."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("mlflow/pyfunc/utils/data_validation.py" in text and "Add type hints to the `predict` method" in text)


logging.getLogger("py.warnings").addFilter(_LibraryWarningFilter())

from kedro_mlflow.framework.hooks import MlflowHook  # noqa: E402 - after the filter above

logger = logging.getLogger(__name__)


class ParameterValidationHook:
    """Checks every parameter as soon as a run's context exists: the merged
    configuration with any ``--params`` overrides, all blocks and the rules across them, with
    every problem in one message. That is before any hook or node reads a parameter, before
    kedro-mlflow opens a run, and before anything is trained or written. A run that trains
    also needs the training device present (checked first among the ``before_pipeline_run``
    hooks, before kedro-mlflow opens its run).

    Nodes then receive each block as its typed model (``longtail.params``): Kedro builds it
    from the node's annotation when it creates the catalog. One instance serves every session
    of the process (settings.py), so it keeps no run's parameters: each hook reads its own
    run's, from its context (``context_parameters``) or its catalog (``run_parameters``)."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        context_parameters(context)

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        """A run that trains needs the training device on this machine (or its Dask cluster)."""
        if "params:training" not in pipeline.inputs():
            return
        problem = run_parameters(catalog).training.device_problem()
        if problem:
            raise InvalidParameters([problem])


def context_parameters(context: Any) -> StudyParams:
    """The parameters of ``context`` (its configuration with the session's overrides), checked."""
    return validate_parameters(context.config_loader["parameters"])


def run_parameters(catalog: DataCatalog) -> StudyParams:
    """The parameters of the run that ``catalog`` belongs to, checked (they were, with its
    context: this takes microseconds and reads no other session's; read from the dataset, as
    ``catalog.load`` would log a line for it)."""
    return validate_parameters(catalog.get("parameters").load())


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
    ``python -m longtail.tracking upload`` copies to the server later.

    The local store reaches kedro-mlflow through ``MLFLOW_TRACKING_URI`` (which ``mlflow.yml``
    reads), set only while the context's hooks run: kedro-mlflow has then pointed MLflow at it
    for the session, and the variable is restored, also on error, so that a later session in
    the same process (a notebook, the tests) reads its own configuration again."""

    @hook_impl(wrapper=True)
    def after_context_created(self, context: Any) -> Any:
        offline = self._offline_store(context)
        if offline is None:
            return (yield)
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = offline
        try:
            return (yield)
        finally:
            if previous is None:
                del os.environ["MLFLOW_TRACKING_URI"]
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous

    def _offline_store(self, context: Any) -> str | None:
        """None if the tracking server answers; the local store to use if it need not."""
        params = context_parameters(context).tracking
        uri = context.config_loader["mlflow"]["server"]["mlflow_tracking_uri"]
        problem = server_answers(uri, params.timeout_s)
        if problem is None:
            return None
        if params.required:
            raise TrackingUnavailable(
                f"the MLflow tracking server {uri} does not answer ({problem}). Start it, point "
                "MLFLOW_TRACKING_URI elsewhere, or set tracking.required: false to train anyway "
                "and keep the runs in a local store for a later upload."
            )
        offline = f"sqlite:///{(Path(context.project_path) / params.offline_store).resolve()}"
        logger.warning("MLflow server %s does not answer (%s): keeping runs in %s", uri, problem, offline)
        return offline


class TrainingProvenanceHook:
    """Before a node that reads the subset masks together with training results (scoring,
    diagnostics, removal, export), checks that they belong together: that their content is
    what ``training_provenance`` recorded when training produced them. Otherwise, e.g. after
    ``sampling`` ran with a new seed but training failed, it stops the run with one message
    naming each artefact and its version, instead of scoring new masks against old models.

    Each version of an artefact is hashed once per run: when a node saves it, or before the
    first node that reads it (hashing every input before every node cost 0.3 s per node at
    mnist5k, and grows with the arrays: benchmarks/provenance.py)."""

    WATCHED = ("subset_masks", *TRAINING_RESULTS)

    def __init__(self) -> None:
        self._catalog: DataCatalog | None = None
        self._fingerprints: dict[tuple[str, str], str] = {}  # (artefact, version) -> fingerprint

    @hook_impl
    def after_catalog_created(self, catalog: DataCatalog) -> None:
        self._catalog, self._fingerprints = catalog, {}

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if dataset_name in self.WATCHED and self._catalog is not None and isinstance(data, np.ndarray):
            self._fingerprints[(dataset_name, _save_version(self._catalog, dataset_name))] = fingerprint(np.asarray(data))

    @hook_impl
    def before_node_run(self, node: Any, catalog: DataCatalog, inputs: dict[str, Any]) -> None:
        checked = [name for name in self.WATCHED if name in inputs]
        if "subset_masks" not in checked or len(checked) < 2 or "training_provenance" not in catalog:
            return
        try:
            provenance = catalog.load("training_provenance")
        except DatasetError:
            provenance = {}
        fingerprints = {name: self._fingerprint(catalog, name, inputs[name]) for name in checked}
        mismatched = mismatched_inputs(fingerprints, provenance)
        if mismatched:
            raise MismatchedInputs(_mismatch_message(node.name, catalog, sorted(checked), mismatched))

    def _fingerprint(self, catalog: DataCatalog, name: str, data: Any) -> str:
        """The fingerprint of the version of ``name`` that ``data`` was loaded from, computed once."""
        key = (name, _load_version(catalog, name))
        if key not in self._fingerprints:
            self._fingerprints[key] = fingerprint(np.asarray(data))
        return self._fingerprints[key]


def _mismatch_message(node: str, catalog: DataCatalog, names: list[str], mismatched: list[str]) -> str:
    described = ", ".join(f"{name} (version {_load_version(catalog, name)})" for name in names)
    return (
        f"node {node!r} would combine {described}, which were not produced together: "
        f"{', '.join(mismatched)} differ from what training recorded in training_provenance "
        f"(version {_load_version(catalog, 'training_provenance')}). Rerun training on the current "
        "masks (kedro run --pipelines training; stored models are reused), or pass matching "
        "versions with --load-versions."
    )


def _save_version(catalog: DataCatalog, name: str) -> str:
    """The version a save of ``name`` just wrote, named as ``_load_version`` names it when read back."""
    dataset = catalog.get(name)
    return dataset.resolve_save_version() if isinstance(dataset, AbstractVersionedDataset) else "unversioned"


def _load_version(catalog: DataCatalog, name: str) -> str:
    dataset = catalog.get(name)
    if isinstance(dataset, AbstractVersionedDataset):
        try:
            return dataset.resolve_load_version() or "none"
        except DatasetError:
            return "none saved"
    return "unversioned"


class MlflowStudyHook:
    """Makes the MLflow UI show the study. The experiment gets the tags of ``mlflow.yml``'s
    ``create_experiment_kwargs`` even when it was created before they were configured
    (``mlflow.experimentKind: custom_model_development`` marks it as model training, not GenAI,
    for MLflow 3's UI), and the parent run is named for the study
    (``tracking.study_run_name``) with the pipelines it ran in the ``longtail.pipelines`` tag,
    after kedro-mlflow's hooks (``trylast``) have set the experiment up and started the run;
    at the end the run's description gets the headline metrics (``tracking.study_summary``).
    The run's parameters are kedro-mlflow's to log (``TypedParamsMlflowHook``)."""

    @hook_impl(trylast=True)
    def after_context_created(self, context: Any) -> None:
        config = getattr(context, "mlflow", None)
        if config is None:
            return
        experiment = config.tracking.experiment
        found = mlflow.get_experiment_by_name(experiment.name)
        if found is not None:
            add_missing_experiment_tags(MlflowClient(), found.experiment_id, experiment.create_experiment_kwargs.tags or {})

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        if mlflow.active_run() is None:
            return
        pipelines = run_params.get("pipeline_names") or [run_params.get("pipeline_name") or "__default__"]
        study = run_parameters(catalog).model_dump(mode="json")
        mlflow.set_tags({MLFLOW_RUN_NAME: study_run_name(study), PIPELINES_TAG: "+".join(pipelines)})

    @hook_impl(tryfirst=True)  # before kedro-mlflow ends the run
    def after_pipeline_run(self) -> None:
        run = mlflow.active_run()
        if run is not None:
            metrics = MlflowClient().get_run(run.info.run_id).data.metrics
            mlflow.set_tag(MLFLOW_RUN_NOTE, study_summary(metrics))


class TypedParamsMlflowHook(MlflowHook):
    """kedro-mlflow's hook, handed each typed parameter block (``longtail.params``) as the dict
    it was read from. kedro-mlflow flattens dict parameters (``training.lr``, as ``mlflow.yml``
    asks) but logs anything else as its text, so without this every run would carry each block
    as one long param (``training`` = "executor='local' … lr=0.1 …"). Registered in
    settings.py in place of the plugin's own instance."""

    @hook_impl
    def before_node_run(self, node: Node, catalog: DataCatalog, inputs: dict[str, Any], is_async: bool) -> None:
        plain = {name: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for name, v in inputs.items()}
        super().before_node_run(node, catalog, plain, is_async)
