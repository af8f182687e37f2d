"""Several Kedro sessions in one process, as a notebook opens them: the project's hooks are one
instance each for the whole process (settings.HOOKS), so no session may read another's state."""

from __future__ import annotations

from pathlib import Path

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.test_study import mlflow_runs


class _OpensAnotherSession:
    """Creates another session's context while a run is between its own context and its first
    node (as a second notebook thread, or a node that opens a session, would)."""

    def __init__(self, other: KedroSession) -> None:
        self._other = other

    @hook_impl
    def after_catalog_created(self) -> None:
        self._other.load_context()


def test_a_run_reads_its_own_parameters_when_another_session_opens(project: Path) -> None:
    bootstrap_project(project)
    mine = {"sampling": {"n_models": 8}, "training": {"epochs": 1, "device": "cpu"}}
    # the other session: other models, and a device this machine lacks (refused only when it trains)
    other = KedroSession.create(project_path=project, env="smoke", runtime_params={"sampling": {"n_models": 16}, "training": {"device": "cuda:7"}})
    try:
        with KedroSession.create(project_path=project, env="smoke", runtime_params=mine) as session:
            session._hook_manager.register(_OpensAnotherSession(other))  # beside the project's hooks
            session.run(pipeline_names=["ingestion", "sampling", "training"])
    finally:
        other.close()
    (parent,), children = mlflow_runs(project)
    assert parent.info.run_name == "digits · 8 × mlp 64 · seed 0"
    assert len(children) == 8


def test_sessions_run_one_after_another_each_close_their_own_mlflow_run(project: Path) -> None:
    """kedro-mlflow reopens the study's run before every node. Nested (its template's default),
    each reopening stayed on MLflow's stack and only one was closed at the end, so the run was
    still active after the session and the next session's runs landed in it."""
    bootstrap_project(project)
    for seed in (0, 1):
        params = {"sampling": {"n_models": 8, "seed": seed}, "training": {"epochs": 1, "device": "cpu"}}
        with KedroSession.create(project_path=project, env="smoke", runtime_params=params) as session:
            session.run(pipeline_names=["ingestion", "sampling", "training"])
        assert mlflow.active_run() is None
    parents, children = mlflow_runs(project)
    assert len(parents) == 2 and {parent.info.status for parent in parents} == {"FINISHED"}
    assert len(children) == 16
    assert {child.data.tags["mlflow.parentRunId"] for child in children} == {parent.info.run_id for parent in parents}
