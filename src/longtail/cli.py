"""Project commands: Kedro's own, with ``kedro run`` reporting the user's mistakes
(``longtail.errors.UserFacingError``: bad parameters, missing or unusable data) as one
readable message and exit status 1, instead of a stack trace."""

from __future__ import annotations

import copy
import functools
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

from longtail.errors import UserFacingError


def _reporting_user_errors(callback: Any) -> Any:
    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except UserFacingError as error:
            raise click.ClickException(str(error)) from error

    return wrapper


@click.group(name="longtail")
def cli() -> None:
    """Commands of the longtail project."""


run = copy.copy(kedro_run)
run.callback = _reporting_user_errors(kedro_run.callback)
cli.add_command(run)
