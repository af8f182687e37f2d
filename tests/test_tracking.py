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
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient

from longtail.tracking import (
    HEADLINE_METRICS,
    RUN_NAME_COLUMN,
    add_missing_experiment_tags,
    log_model_runs,
    model_runs_table,
    server_answers,
    study_run_name,
    study_summary,
    upload_runs,
)


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
    uploaded = server.get_experiment_by_name("longtail")
    assert uploaded.tags["mlflow.experimentKind"] == "custom_model_development"
    copied = server.search_runs([uploaded.experiment_id], max_results=100)
    parent = next(r for r in copied if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in copied if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 24
    original = next(r for r in kept if r.data.tags.get("mlflow.runName") == children[0].data.tags["mlflow.runName"])
    assert children[0].data.params == original.data.params
    assert children[0].data.metrics == original.data.metrics
    history = server.get_metric_history(children[0].info.run_id, "epoch_loss")
    assert len(history) == 4 and children[0].info.status == "FINISHED"


def _context_of(root: Path, **runtime_params: object):
    bootstrap_project(root)
    with KedroSession.create(project_path=root, runtime_params=runtime_params) as session:
        return session.load_context()


def test_an_offline_session_leaves_the_next_session_its_own_store(make_project, monkeypatch) -> None:
    """Two sessions in one process (a notebook) while the server named by MLFLOW_TRACKING_URI
    does not answer: each keeps its runs in its own project's offline store, and the address
    is the user's again after each (the first used to leave MLFLOW_TRACKING_URI pointing at its
    offline file, so every later session, of any project, logged there)."""
    server = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    offline = {"required": False, "timeout_s": 5}
    for name in ("first", "second"):
        root = make_project(name)
        context = _context_of(root, tracking=offline)
        assert context.mlflow.server.mlflow_tracking_uri == f"sqlite:///{root / 'mlflow-offline.db'}"
        assert mlflow.get_tracking_uri() == f"sqlite:///{root / 'mlflow-offline.db'}"
        assert os.environ["MLFLOW_TRACKING_URI"] == server


def test_a_session_that_fails_after_going_offline_restores_the_tracking_address(make_project, monkeypatch) -> None:
    server = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    root = make_project("refused")
    config = yaml.safe_load((root / "conf" / "base" / "mlflow.yml").read_text())
    config["server"]["unknown_option"] = 1  # kedro-mlflow refuses it, after the offline switch
    (root / "conf" / "local" / "mlflow.yml").write_text(yaml.safe_dump(config))
    with pytest.raises(Exception, match="unknown_option"):
        _context_of(root, tracking={"required": False, "timeout_s": 5})
    assert os.environ["MLFLOW_TRACKING_URI"] == server


def test_child_runs_are_named_by_source_and_index_or_by_their_run_name_column(store: str) -> None:
    table, *_ = _table(3)
    named = table.assign(**{RUN_NAME_COLUMN: ["removal-t0.50-memorization-r1", "a", "b"]})
    with mlflow.start_run() as parent:
        log_model_runs(table.iloc[[2]], source="subset")
        log_model_runs(table.iloc[[1]], source="proxy")
        log_model_runs(named.iloc[[0]], source="removal")
    children = MlflowClient().search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.info.run_name for r in children) == ["proxy-1", "removal-t0.50-memorization-r1", "subset-0002"]


def _parameters(model: str = "mlp", sampling_seed: int = 0, training_seed: int = 0) -> dict:
    return {
        "dataset": {"name": "mnist5k"},
        "sampling": {"n_models": 500, "seed": sampling_seed},
        "training": {"model": model, "hidden_sizes": [512, 256], "seed": training_seed},
    }


def test_the_parent_run_is_named_for_the_study() -> None:
    assert study_run_name(_parameters()) == "mnist5k · 500 × mlp 512-256 · seed 0"
    assert study_run_name(_parameters("resnet", 1, 2)) == "mnist5k · 500 × resnet · seeds 1/2"


def test_an_existing_experiment_gets_only_the_tags_it_lacks(store: str) -> None:
    client = MlflowClient()
    experiment_id = client.create_experiment("older", tags={"team": "a"})
    wanted = {"mlflow.experimentKind": "custom_model_development", "team": "b"}
    assert add_missing_experiment_tags(client, experiment_id, wanted) == ["mlflow.experimentKind"]
    assert client.get_experiment(experiment_id).tags == {"mlflow.experimentKind": "custom_model_development", "team": "a"}
    assert add_missing_experiment_tags(client, experiment_id, wanted) == []


def test_the_summary_lists_the_headline_metrics_present() -> None:
    accuracy, memorized = HEADLINE_METRICS[0][0], HEADLINE_METRICS[1][0]
    summary = study_summary({accuracy: 0.91234, memorized: 1234.0, "other": 5.0})
    assert "| mean test accuracy of the subset models | 0.9123 |" in summary
    assert "| training examples memorized | 1,234 |" in summary
    assert "pairs reported" not in summary and "other" not in summary
    assert "|" not in study_summary({})  # a run without headline metrics: no empty table


def test_the_smoke_study_opens_as_a_named_study_in_mlflow(smoke_run: tuple) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_run[0] / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("longtail")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`longtail.pipelines` = '__default__'")
    assert parent.info.run_name == "digits · 24 × mlp 64 · seed 0"
    assert "| mean test accuracy of the subset models |" in parent.data.tags["mlflow.note.content"]


def test_an_experiment_made_before_the_kind_tag_gets_it_on_the_next_run(make_project, kedro_cli) -> None:
    root = make_project("older")
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    client.create_experiment("longtail")
    # a run that stops at its first node is enough: the experiment is set up before (the
    # sampling pipeline alone finds no training labels in a fresh project)
    assert kedro_cli(root, "run", "--env", "smoke", "--pipelines", "sampling").returncode == 1
    assert client.get_experiment_by_name("longtail").tags.get("mlflow.experimentKind") == "custom_model_development"
