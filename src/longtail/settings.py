"""Kedro settings for longtail."""

import os

from longtail.hooks import MlflowArtifactsHook, ParameterValidationHook

HOOKS = (ParameterValidationHook(), MlflowArtifactsHook())

# kedro-viz and kedro-telemetry hooks are not wanted in batch runs.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry",)


def _env(name: str, default: str) -> str:
    """``${env:NAME,default}`` in any config file, e.g. the MLflow tracking URI."""
    return os.environ.get(name, default)


CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"env": _env},
    # An environment (conf/<env>) overrides single keys of conf/base, not whole blocks.
    "merge_strategy": {"parameters": "soft"},
}
