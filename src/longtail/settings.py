"""Kedro settings for longtail."""

import os
import warnings
from pathlib import Path

from kedro.utils import find_kedro_project
from omegaconf import OmegaConf

from longtail.hooks import (
    MlflowArtifactsHook,
    MlflowStudyHook,
    ParameterValidationHook,
    RunContextHook,
    StudySummaryHook,
    TrackingAvailabilityHook,
    TrainingProvenanceHook,
    TypedParamsMlflowHook,
)
from longtail.io.versions import UniqueVersionStore

# One instance of each serves every session of the process (a notebook may open several):
# none keeps a run's parameters, each reads them from the context or catalog it is given.
HOOKS = (
    TrackingAvailabilityHook(),
    ParameterValidationHook(),
    TrainingProvenanceHook(),
    MlflowArtifactsHook(),
    MlflowStudyHook(),
    RunContextHook(),
    StudySummaryHook(),
    TypedParamsMlflowHook(),  # last, as the plugin's own hook would be: pluggy calls the latest registered first
)

# kedro-mlflow's hook is registered above, as TypedParamsMlflowHook. Kedro matches the
# distribution's metadata name, which kedro-mlflow's wheel spells with an underscore.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry", "kedro_mlflow", "kedro-mlflow")

# Unique save versions for drivers that share one project (longtail.io.versions).
SESSION_STORE_CLASS = UniqueVersionStore

# Warnings raised inside libraries, about the libraries' own code, that a user of longtail can
# do nothing about. Each is silenced by its message and the module that raises it, so the same
# warning from anywhere else (our own code included) still shows.
# - Kedro's config loader and kedro-mlflow register their resolvers with omegaconf's deprecated
#   register_new_resolver() (ours is registered with register_resolver() below).
warnings.filterwarnings(
    "ignore",
    message=r"register_new_resolver\(\) is deprecated",
    category=UserWarning,
    module=r"kedro\.config\.omegaconf_config|kedro_mlflow\.",
)


# - kedro-viz 12.5 uses FastAPI's ORJSONResponse, which newer FastAPI releases deprecate.
warnings.filterwarnings("ignore", message=r"ORJSONResponse is deprecated", module=r"kedro_viz\.")


def _tracking_uri(database: str = "mlflow.db") -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the SQLite store ``database`` in the project root.

    The path is made absolute: MLflow caches one store per URI string, so a relative
    ``sqlite:///mlflow.db`` would send a second project's runs (in the same Python process,
    e.g. a notebook or the tests) to the first project's database.
    """
    root = find_kedro_project(Path.cwd()) or Path.cwd()
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(root) / database).resolve()}"


# Registered here, with omegaconf's current API, rather than through CONFIG_LOADER_ARGS'
# custom_resolvers, which Kedro registers with the deprecated one.
OmegaConf.register_resolver("tracking_uri", _tracking_uri, replace=True)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # kedro-mlflow's file, declared here too so that project hooks can read it first.
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]},
    # An environment (conf/<env>) overrides single keys of conf/base, not whole blocks.
    "merge_strategy": {"parameters": "soft"},
}
