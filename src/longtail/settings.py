"""Kedro settings for longtail."""

import os
from pathlib import Path

from kedro.utils import find_kedro_project

from longtail.hooks import MlflowArtifactsHook, ParameterValidationHook, TrackingAvailabilityHook, TrainingProvenanceHook

HOOKS = (TrackingAvailabilityHook(), ParameterValidationHook(), TrainingProvenanceHook(), MlflowArtifactsHook())

DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry",)


def _tracking_uri(database: str = "mlflow.db") -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the SQLite store ``database`` in the project root.

    The path is made absolute: MLflow caches one store per URI string, so a relative
    ``sqlite:///mlflow.db`` would send a second project's runs (in the same Python process,
    e.g. a notebook or the tests) to the first project's database.
    """
    root = find_kedro_project(Path.cwd()) or Path.cwd()
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(root) / database).resolve()}"


CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"tracking_uri": _tracking_uri},
    # kedro-mlflow's file, declared here too so that project hooks can read it first.
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]},
    # An environment (conf/<env>) overrides single keys of conf/base, not whole blocks.
    "merge_strategy": {"parameters": "soft"},
}
