"""Per-model child runs on a real MLflow SQLite store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from longtail.tracking import log_model_runs, model_runs_table


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
