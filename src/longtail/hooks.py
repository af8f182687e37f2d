"""Project hooks: parameter validation before a run, matching inputs before each node, MLflow
artefacts after each save, the run's note of itself for the report, and the closing summary."""

from __future__ import annotations

import logging
import os
import platform
import shlex
import subprocess
import time
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

from longtail.estimate import Selection
from longtail.nets.config import describe_device, describe_machine
from longtail.params import InvalidParameters, StudyParams, validate_parameters
from longtail.report import findings
from longtail.shards import fingerprint
from longtail.study import TRAINING_RESULTS, MismatchedInputs, mismatched_inputs
from longtail.tracking import (
    PIPELINES_TAG,
    TrackingUnavailable,
    add_missing_experiment_tags,
    runs_table_link,
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
summary_logger = logging.getLogger("longtail.summary")  # conf/logging.yml prints it plain, on the console


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

    Each version of an artefact is hashed at most once per run. The node that writes
    ``training_provenance`` has just hashed its inputs and outputs into it, so their
    fingerprints are taken from there; any other version is hashed before the first checked
    node that reads it. (Hashing every input before every node cost 0.1-0.7 s per node on a
    CIFAR-sized study, and hashing every write as much again: benchmarks/provenance.py.)"""

    WATCHED = ("subset_masks", *TRAINING_RESULTS)

    def __init__(self) -> None:
        self._fingerprints: dict[tuple[str, str], str] = {}  # (artefact, version) -> fingerprint

    @hook_impl
    def after_catalog_created(self, catalog: DataCatalog) -> None:
        self._fingerprints = {}

    @hook_impl
    def after_node_run(self, node: Node, catalog: DataCatalog, outputs: dict[str, Any]) -> None:
        """Trust the fingerprints training just recorded for the versions it read and wrote."""
        recorded = outputs.get("training_provenance", {}).get("fingerprints", {})
        for name in self.WATCHED:
            if name in recorded and name in node.outputs:
                self._fingerprints[(name, _save_version(catalog, name))] = recorded[name]
            elif name in recorded and name in node.inputs:
                self._fingerprints[(name, _load_version(catalog, name))] = recorded[name]

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


#: The artefacts whose files the report lists, and the closing summary's report.
REPORTED_ARTEFACTS = (
    "study_report", "memorization_scores", "influence_pairs", "reported_pairs", "high_influence_pairs",
    "removal_curve", "subset_model_runs", "agreement", "convergence", "label_noise_detection",
    "memorization_grid", "influence_pairs_figure", "removal_curve_figure",
)


class RunContextHook:
    """Hands the report what a run knows of itself, as the catalog entry ``run_context`` (a
    dict, for the runs whose pipeline reads it): the study's name, when the run started, the
    command that repeats it, the device and machine, the software and the project's git
    commit, the MLflow experiment and run, and the files of the artefacts the report lists."""

    @hook_impl(trylast=True)  # after kedro-mlflow has started the run
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        if "run_context" not in pipeline.inputs():
            return
        study = run_parameters(catalog)
        active = mlflow.active_run()
        root = Path(run_params.get("project_path") or ".")
        catalog["run_context"] = {
            "study": study_run_name(study.model_dump(mode="json")),
            "started": time.time(),
            "commands": [kedro_command(run_params)],
            "device": _device(study),
            "machine": describe_machine(),
            "software": _software(),
            "commit": _git_commit(root),
            "mlflow": _mlflow_ids(active),
            "artefacts": _artefacts(catalog, pipeline, root),
        }


def _mlflow_ids(active: Any) -> dict[str, str]:
    if active is None:
        return {}
    experiment = active.info.experiment_id
    return {"experiment_id": experiment, "run_id": active.info.run_id, "link": runs_table_link(mlflow.get_tracking_uri(), experiment)}


def kedro_command(run_params: dict[str, Any]) -> str:
    """The ``kedro run`` command line of a run: its environment, pipelines, load versions and
    parameter overrides."""
    words = ["kedro", "run"]
    if run_params.get("env") not in (None, "local"):
        words += ["--env", str(run_params["env"])]
    if run_params.get("pipeline_names"):
        words += ["--pipelines", ",".join(run_params["pipeline_names"])]
    if run_params.get("load_versions"):
        words += ["--load-versions", ",".join(f"{k}:{v}" for k, v in run_params["load_versions"].items())]
    overrides = _flat(run_params.get("runtime_params") or {})
    if overrides:
        words += ["--params", ",".join(f"{key}={value}" for key, value in overrides.items())]
    return shlex.join(words)


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _device(study: StudyParams) -> str:
    training = study.training
    if training.executor == "dask" and training.scheduler_address:
        return f"{training.device} on the workers of the Dask cluster {training.scheduler_address}"
    return describe_device(training.device)


def _software() -> str:
    import kedro  # noqa: PLC0415
    import torch  # noqa: PLC0415

    return f"Python {platform.python_version()}, torch {torch.__version__}, Kedro {kedro.__version__}, MLflow {mlflow.__version__}"


def _git_commit(root: Path) -> str | None:
    """The project's git commit (with ``+changes`` when its tracked files differ from it); None
    outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + (" +changes" if changed.stdout.strip() else "")


def _artefacts(catalog: DataCatalog, pipeline: Pipeline, root: Path) -> dict[str, str]:
    """The file of each listed artefact: the version this run writes, or for one it only
    reads, the version it loads; the shard store's folder."""
    written = pipeline.all_outputs()
    files = {}
    for name in REPORTED_ARTEFACTS:
        if name not in catalog:
            continue
        path = artefact_path(catalog.get(name), saving=name in written)
        if path is not None:
            files[name] = _relative(path, root)
    if "shard_store" in catalog:
        files["shard_store"] = _relative(Path(catalog.get("shard_store")._describe()["path"]), root) + "/<experiment>/"
    return files


def artefact_path(dataset: Any, saving: bool) -> Path | None:
    """The file a dataset writes in this run (``saving``) or would load; None when it has no
    version to load."""
    if not saving and isinstance(dataset, AbstractVersionedDataset) and dataset._version is not None:
        try:
            return Path(dataset._get_versioned_path(dataset.resolve_load_version()))
        except DatasetError:
            return None
    return Path(saved_path(dataset))


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


class StudySummaryHook:
    """Ends every run that scored with a summary of at most ten lines on the console (logger
    ``longtail.summary``): the study and how long the run took, the headline findings, the
    report's file, the MLflow link that opens the runs table and the log file. It takes the
    tables from the nodes' outputs as this run makes them, so it never reads another run's."""

    CAPTURED = ("memorization_scores", "reported_pairs", "subset_model_runs", "removal_curve", "agreement")

    def __init__(self) -> None:
        self._reset(None)

    def _reset(self, catalog: DataCatalog | None) -> None:
        self._catalog, self._tables, self._report, self._pairs_tested = catalog, {}, None, 0
        self._started, self._mlflow = time.monotonic(), None

    @hook_impl(trylast=True)  # after kedro-mlflow has started the run
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        self._reset(catalog)
        active = mlflow.active_run()
        if active is not None:
            self._mlflow = runs_table_link(mlflow.get_tracking_uri(), active.info.experiment_id)

    @hook_impl
    def after_node_run(self, node: Node, outputs: dict[str, Any]) -> None:
        self._tables.update({name: outputs[name] for name in self.CAPTURED if name in outputs})
        if "influence_pairs" in outputs:
            self._pairs_tested = int(outputs["influence_pairs"].attrs.get("n_tests", 0))

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if dataset_name == "study_report" and self._catalog is not None:
            self._report = _relative(Path(saved_path(self._catalog.get(dataset_name))), Path.cwd())

    @hook_impl
    def after_pipeline_run(self) -> None:
        if "memorization_scores" not in self._tables:
            return
        for line in self.lines():
            summary_logger.info(line)

    def lines(self) -> list[str]:
        study = run_parameters(self._catalog)
        found = findings.find(
            self._tables["memorization_scores"], Selection.of(study.scoring), self._tables.get("reported_pairs"),
            self._pairs_tested, self._tables.get("subset_model_runs"), self._tables.get("removal_curve"),
            self._tables.get("agreement"),
        )
        elapsed = findings.duration(time.monotonic() - self._started)
        report = self._report or "not written by this run (kedro run --pipelines reporting writes it)"
        lines = [f"{study_run_name(study.model_dump(mode='json'))}: done in {elapsed}"]
        lines += [f"  {line}" for line in findings.summary_lines(found)]
        lines.append(f"  report: {report}")
        if self._mlflow:
            lines.append(f"  MLflow: {self._mlflow}")
        log = _log_file()
        if log:
            lines.append(f"  log: {log} (every dataset load and save, every node)")
        return lines


def _log_file() -> str | None:
    """The file the logging configuration writes the whole log to, if any."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return _relative(Path(handler.baseFilename), Path.cwd())
    return None
