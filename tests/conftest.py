"""Shared fixtures: copies of the project in temporary folders, to run real Kedro sessions in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml

from longtail.params import validate_parameters

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
# Each project copy logs to its own store, not to a server the developer's shell names (a
# test that needs the variable sets it; no session leaves it changed, tests/test_tracking.py).
os.environ.pop("MLFLOW_TRACKING_URI", None)


def base_parameters() -> dict:
    """The project's parameters as conf/base holds them (every ``parameters_*.yml`` merged)."""
    merged: dict = {}
    for path in sorted((PROJECT_ROOT / "conf" / "base").glob("parameters_*.yml")):
        merged.update(yaml.safe_load(path.read_text()))
    return merged


def checked_block(name: str, values: dict) -> Any:
    """The parameter block ``name`` with ``values``, checked as a run checks its parameters
    (``validate_parameters``, the other blocks as in conf/base): its typed model, or
    ``InvalidParameters`` naming each problem."""
    return getattr(validate_parameters({**base_parameters(), name: values}), name)


def _copy_project(root: Path) -> Path:
    """The project's pyproject, telemetry choice, configuration and an empty src/; no data,
    no mlflow.db, no conf/local."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "data").mkdir()
    (root / "src").mkdir()  # the package itself is imported from the installed project
    return root


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh project copy as the working directory, with its own data folder and store."""
    root = _copy_project(tmp_path / "project")
    monkeypatch.chdir(root)
    mlflow.set_tracking_uri(None)
    yield root
    active = mlflow.active_run()  # a run left open would take the next session's runs
    assert active is None, f"MLflow run {active.info.run_id} ({active.info.run_name}) left active"
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def module_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Like ``project``, shared by the tests of one module (for expensive runs)."""
    root = _copy_project(tmp_path_factory.mktemp("project"))
    previous = os.getcwd()
    os.chdir(root)
    try:
        yield root
    finally:
        mlflow.set_tracking_uri(None)
        os.chdir(previous)


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[[str], Path]:
    """Make named project copies (not made the working directory), e.g. for subprocesses."""
    return lambda name: _copy_project(tmp_path / name)


def run_kedro(root: Path, *args: str) -> subprocess.CompletedProcess:
    """``kedro <args>`` in ``root`` as a user types it: no telemetry opt-out in the environment
    (the project's ``.telemetry`` answers), the project's own MLflow store, a wide console."""
    env = {key: value for key, value in os.environ.items() if key not in ("DO_NOT_TRACK", "KEDRO_DISABLE_TELEMETRY", "MLFLOW_TRACKING_URI")}
    return subprocess.run([KEDRO, *args], cwd=root, env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def kedro_cli() -> Callable[..., subprocess.CompletedProcess]:
    """``run_kedro`` as a fixture, for tests that take their tools as arguments."""
    return run_kedro


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """One ``kedro run --env smoke`` in a project copy, shared by the tests that need a finished
    study on disk and in MLflow (the browser tests) or its console output (the CLI tests)."""
    root = _copy_project(tmp_path_factory.mktemp("smoke"))
    result = run_kedro(root, "run", "--env", "smoke")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, result
