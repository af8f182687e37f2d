"""Project commands: Kedro's own, with ``kedro run`` reporting the user's mistakes
(``longtail.errors.UserFacingError``: bad parameters, missing or unusable data, a pipeline or
environment that does not exist) as one readable message and exit status 1, instead of a
stack trace."""

from __future__ import annotations

import copy
import difflib
import functools
import os
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.project import settings
from kedro.utils import find_kedro_project

from longtail.errors import UserFacingError
from longtail.pipeline_registry import pipeline_names


class UnknownName(UserFacingError):
    """A pipeline or an environment that the project does not have."""


def _reporting_user_errors(callback: Any) -> Any:
    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            _check_names(kwargs)
            return callback(*args, **kwargs)
        except UserFacingError as error:
            raise click.ClickException(str(error)) from error

    return wrapper


def _check_names(options: dict[str, Any]) -> None:
    """The pipelines and the environment asked for exist (Kedro itself would stop with a stack
    trace: an ImportError of a module named after the pipeline, a MissingConfigException)."""
    asked = list(options.get("pipelines") or []) + ([options["pipeline"]] if options.get("pipeline") else [])
    known = pipeline_names()
    for name in asked:
        if name not in known:
            raise UnknownName(f"unknown pipeline {name!r}{_close_to(name, known)}; the pipelines: {', '.join(known)}")
    env = options.get("env") or os.environ.get("KEDRO_ENV")
    shown = options.get("conf_source") or f"{settings.CONF_SOURCE}/"
    conf = Path(options.get("conf_source") or (find_kedro_project(Path.cwd()) or Path.cwd()) / settings.CONF_SOURCE)
    if env and conf.is_dir() and not (conf / env).is_dir():  # (a packaged conf_source is Kedro's to check)
        envs = sorted(folder.name for folder in conf.iterdir() if folder.is_dir() and not folder.name.startswith("."))
        raise UnknownName(f"unknown environment {env!r}{_close_to(env, envs)}; the environments under {shown}: {', '.join(envs)}")


def _close_to(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@click.group(name="longtail")
def cli() -> None:
    """Commands of the longtail project."""


run = copy.copy(kedro_run)
run.callback = _reporting_user_errors(kedro_run.callback)
cli.add_command(run)
