"""Crash safety and concurrency of training, with real `kedro run` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient

from tests.conftest import KEDRO

# Small shards (12 of 2 models), so that a kill lands mid-training.
SLOW = "training.models_per_shard=2,training.epochs=8"
STAGES = "ingestion,sampling,training,scoring"


def kedro_run(root: Path, store: str = "mlflow.db", wait: bool = True) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / store}", "DO_NOT_TRACK": "1"}
    process = subprocess.Popen(
        [KEDRO, "run", "--env", "smoke", "--pipelines", STAGES, "--params", SLOW],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    if wait:
        output = process.communicate(timeout=600)[0]
        assert process.returncode == 0, output[-3000:]
    return process


def shard_files(root: Path) -> list[Path]:
    return sorted((root / "data" / "06_models" / "shards").glob("*/shard-*.npz"))


def scores(root: Path) -> pd.DataFrame:
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env="smoke") as session:
        return session.load_context().catalog.load("memorization_scores")


def child_model_indices(root: Path, store: str) -> list[int]:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / store}")
    experiment = client.get_experiment_by_name("longtail")
    # FINISHED only: a kill can land between a child run's creation and its logging
    query = "tags.`longtail.source` = 'subset' and attributes.status = 'FINISHED'"
    runs = client.search_runs([experiment.experiment_id], query, max_results=1000)
    return sorted(int(r.data.params["model_index"]) for r in runs)


def last_parent_metrics(root: Path, store: str) -> dict[str, float]:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / store}")
    experiment = client.get_experiment_by_name("longtail")
    runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    return parent.data.metrics


def test_a_killed_run_resumes_to_the_scores_of_an_uninterrupted_one(make_project: Callable[[str], Path]) -> None:
    interrupted = make_project("interrupted")
    process = kedro_run(interrupted, wait=False)
    deadline = time.time() + 300
    while not shard_files(interrupted) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(shard_files(interrupted))
    assert 1 <= done_before < 12, "the kill did not land during training"

    kedro_run(interrupted)
    assert len(shard_files(interrupted)) == 12
    # the rerun reused every shard the killed run had finished and trained only the rest
    metrics = last_parent_metrics(interrupted, "mlflow.db")
    assert metrics["training_metrics.models_reused_from_store"] == 2 * done_before
    assert metrics["training_metrics.models_trained_in_this_run"] == 24 - 2 * done_before
    logged = child_model_indices(interrupted, "mlflow.db")
    assert len(set(logged)) == len(logged) >= 22  # a kill loses at most the logging of the shard in flight
    uninterrupted = make_project("uninterrupted")
    kedro_run(uninterrupted)
    # Exact on purpose: both runs train the same shards (2 models each) with the same kernels,
    # shapes and thread count on this one machine, which CPU kernels reproduce bit for bit;
    # comparisons across shard groupings or machines use float64 (tests/test_executors.py).
    pd.testing.assert_frame_equal(scores(interrupted), scores(uninterrupted))


def test_two_runs_on_one_store_train_each_shard_once(make_project: Callable[[str], Path]) -> None:
    root = make_project("shared")
    first = kedro_run(root, store="first.db", wait=False)
    second = kedro_run(root, store="second.db", wait=False)
    for process in (first, second):
        output = process.communicate(timeout=600)[0]
        assert process.returncode == 0, output[-3000:]
    trained = child_model_indices(root, "first.db") + child_model_indices(root, "second.db")
    assert sorted(trained) == list(range(24))
    assert len(shard_files(root)) == 12


def test_more_models_later_train_only_the_new_ones_and_rescore_all(project: Path) -> None:
    from tests.test_study import catalog, run_study  # noqa: PLC0415

    stages = ["ingestion", "sampling", "training", "scoring"]
    run_study(project, pipeline_names=stages, runtime_params={"sampling": {"n_models": 16}, "training": {"models_per_shard": 8}})
    first = catalog(project).load("train_correct")
    run_study(project, pipeline_names=stages, runtime_params={"sampling": {"n_models": 24}, "training": {"models_per_shard": 8}})
    metrics = last_parent_metrics(project, "mlflow.db")
    assert metrics["training_metrics.models_trained_in_this_run"] == 8
    assert metrics["training_metrics.models_reused_from_store"] == 16
    data = catalog(project)
    grown = data.load("train_correct")
    assert grown.shape[0] == 24 and (grown[:16] == first).all()
    assert (data.load("memorization_scores")["n_in"] + data.load("memorization_scores")["n_out"] == 24).all()
