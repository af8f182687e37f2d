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
        while mlflow.active_run() is not None:  # kedro-mlflow leaves its run on MLflow's stack
            mlflow.end_run()
    (parent,), children = mlflow_runs(project)
    assert parent.info.run_name == "digits · 8 × mlp 64 · seed 0"
    assert len(children) == 8
