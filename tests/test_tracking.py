"""Per-model child runs on a real MLflow SQLite store."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from longtail.tracking import log_model_runs, model_runs_table, server_answers, upload_runs


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("tracking-test")
    yield uri
    mlflow.set_tracking_uri(None)


def _table(n_models: int = 4) -> tuple:
    rng = np.random.default_rng(0)
    masks = rng.random((n_models, 10)) < 0.7
    train_correct = rng.random((n_models, 10)) < 0.9
    test_correct = rng.random((n_models, 6)) < 0.8
    loss = rng.random((n_models, 3)).astype(np.float32)
    table = model_runs_table("subset", np.arange(n_models), masks, train_correct, test_correct, loss, {"lr": 0.1})
    return table, masks, train_correct, test_correct, loss


def test_table_metrics_match_a_direct_computation() -> None:
    table, masks, train_correct, test_correct, loss = _table()
    for t in range(len(masks)):
        assert table.loc[t, "metric_subset_accuracy"] == pytest.approx(train_correct[t][masks[t]].mean())
        assert table.loc[t, "metric_held_out_accuracy"] == pytest.approx(train_correct[t][~masks[t]].mean())
        assert table.loc[t, "metric_test_accuracy"] == pytest.approx(test_correct[t].mean())
        assert table.loc[t, "param_subset_size"] == masks[t].sum()
        assert np.allclose(table.loc[t, "epoch_loss"], loss[t])


def test_each_row_becomes_a_child_run_with_its_history(store: str) -> None:
    table, *_ , loss = _table()
    with mlflow.start_run() as parent:
        assert log_model_runs(table, source="subset") == len(table)
    client = MlflowClient()
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == len(table)
    by_index = {int(run.data.params["model_index"]): run for run in children}
    assert sorted(by_index) == list(range(len(table)))
    run = by_index[2]
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.1"
    assert run.data.metrics["test_accuracy"] == pytest.approx(table.loc[2, "metric_test_accuracy"])
    history = client.get_metric_history(run.info.run_id, "epoch_loss")
    assert [m.step for m in history] == [0, 1, 2]
    assert np.allclose([m.value for m in history], loss[2])


def test_without_an_active_run_nothing_is_logged(store: str) -> None:
    table, *_ = _table()
    assert log_model_runs(table, source="subset") == 0
    assert MlflowClient().search_runs([mlflow.get_experiment_by_name("tracking-test").experiment_id]) == []


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_server_answers_tells_a_live_server_from_a_dead_one() -> None:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert server_answers(f"http://127.0.0.1:{server.server_port}", timeout_s=5) is None
    finally:
        server.shutdown()
    assert "refused" in server_answers(f"http://127.0.0.1:{closed_port()}", timeout_s=5).lower()
    assert server_answers("sqlite:///anything.db", timeout_s=5) is None


def _kedro(root: Path, uri: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "DO_NOT_TRACK": "1", "COLUMNS": "200"}
    command = [str(Path(sys.executable).with_name("kedro")), "run", "--env", "smoke", *args]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_an_unreachable_server_stops_the_run_before_anything_is_written(make_project) -> None:
    root = make_project("down")
    uri = f"http://127.0.0.1:{closed_port()}"
    started = time.perf_counter()
    result = _kedro(root, uri)
    assert result.returncode == 1
    assert f"Error: the MLflow tracking server {uri} does not answer" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.perf_counter() - started < 60
    assert [p for p in (root / "data").rglob("*") if p.is_file()] == []


def test_without_a_server_runs_are_kept_locally_and_uploaded_later(make_project) -> None:
    root = make_project("offline")
    result = _kedro(root, f"http://127.0.0.1:{closed_port()}", "--pipelines", "ingestion,sampling,training",
                    "--params", "tracking.required=false")
    assert result.returncode == 0, result.stderr[-3000:]
    offline = f"sqlite:///{root / 'mlflow-offline.db'}"
    kept = MlflowClient(offline).search_runs([MlflowClient(offline).get_experiment_by_name("longtail").experiment_id])
    assert len(kept) == 1 + 24
    target = f"sqlite:///{root / 'server.db'}"
    assert upload_runs(offline, target) == 25
    assert upload_runs(offline, target) == 0  # nothing twice
    server = MlflowClient(target)
    copied = server.search_runs([server.get_experiment_by_name("longtail").experiment_id], max_results=100)
    parent = next(r for r in copied if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in copied if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 24
    original = next(r for r in kept if r.data.tags.get("mlflow.runName") == children[0].data.tags["mlflow.runName"])
    assert children[0].data.params == original.data.params
    assert children[0].data.metrics == original.data.metrics
    history = server.get_metric_history(children[0].info.run_id, "epoch_loss")
    assert len(history) == 4 and children[0].info.status == "FINISHED"
