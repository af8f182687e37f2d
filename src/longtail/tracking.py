"""Batched MLflow logging of per-model child runs.

Every trained model becomes a child run of the active (parent) run. Each child costs three
store calls (create, one ``log_batch`` with all its params, metrics and per-epoch history,
terminate), so that tracking stays small next to training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

logger = logging.getLogger(__name__)

PARAM_PREFIX = "param_"
METRIC_PREFIX = "metric_"
HISTORY_COLUMN = "epoch_loss"
_MAX_METRICS_PER_BATCH = 1000


def _params(row: pd.Series) -> list[Param]:
    return [
        Param(name.removeprefix(PARAM_PREFIX), str(value))
        for name, value in row.items()
        if name.startswith(PARAM_PREFIX)
    ]


def _metrics(row: pd.Series, timestamp: int) -> list[Metric]:
    metrics = [
        Metric(name.removeprefix(METRIC_PREFIX), float(value), timestamp, 0)
        for name, value in row.items()
        if name.startswith(METRIC_PREFIX)
    ]
    history = row.get(HISTORY_COLUMN)
    if history is not None:
        metrics += [Metric(HISTORY_COLUMN, float(v), timestamp, step) for step, v in enumerate(np.asarray(history))]
    return metrics


def _chunks(items: list[Metric], size: int) -> Iterator[list[Metric]]:
    for start in range(0, max(len(items), 1), size):
        yield items[start : start + size]


def log_model_runs(runs: pd.DataFrame, source: str) -> int:
    """Log each row of ``runs`` as a child run of the active MLflow run; return how many.

    Columns named ``param_*`` become params, ``metric_*`` metrics, and the list column
    ``epoch_loss`` a metric history (one step per epoch). Without an active run (e.g. a
    pipeline run with tracking disabled) nothing is logged.
    """
    parent = mlflow.active_run()
    if parent is None:
        logger.info("no active MLflow run: %d %s runs not logged", len(runs), source)
        return 0
    client = MlflowClient()
    experiment_id = parent.info.experiment_id
    started = time.perf_counter()
    timestamp = int(time.time() * 1000)
    for _, row in runs.iterrows():
        tags = {
            MLFLOW_PARENT_RUN_ID: parent.info.run_id,
            MLFLOW_RUN_NAME: f"{source}-{int(row['model_index']):05d}",
            "longtail.source": source,
        }
        run_id = client.create_run(experiment_id, start_time=timestamp, tags=tags).info.run_id
        params = _params(row)
        for number, metrics in enumerate(_chunks(_metrics(row, timestamp), _MAX_METRICS_PER_BATCH)):
            client.log_batch(run_id, metrics=metrics, params=params if number == 0 else [])
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    logger.info("logged %d %s runs to MLflow in %.1f s", len(runs), source, time.perf_counter() - started)
    return len(runs)


def model_runs_table(
    source: str,
    model_ids: np.ndarray,
    masks: np.ndarray,
    train_correct: np.ndarray,
    test_correct: np.ndarray,
    epoch_loss: np.ndarray,
    params: dict[str, object],
) -> pd.DataFrame:
    """One row per trained model in the layout ``log_model_runs`` logs: shared ``params``
    plus the model's index and subset size, its accuracy on its own subset, on the training
    examples it did not see, on the test set, and its per-epoch training loss."""
    subset_size = masks.sum(axis=1)
    held_out = (~masks).sum(axis=1)
    table = pd.DataFrame(
        {
            "model_index": model_ids.astype(np.int64),
            "source": source,
            f"{PARAM_PREFIX}model_index": model_ids.astype(np.int64),
            f"{PARAM_PREFIX}subset_size": subset_size.astype(np.int64),
            **{f"{PARAM_PREFIX}{name}": str(value) for name, value in params.items()},
            f"{METRIC_PREFIX}subset_accuracy": (train_correct & masks).sum(1) / np.maximum(subset_size, 1),
            f"{METRIC_PREFIX}held_out_accuracy": np.where(
                held_out > 0, (train_correct & ~masks).sum(1) / np.maximum(held_out, 1), np.nan
            ),
            f"{METRIC_PREFIX}test_accuracy": test_correct.mean(axis=1),
            f"{METRIC_PREFIX}final_loss": epoch_loss[:, -1].astype(np.float64),
        }
    )
    table[HISTORY_COLUMN] = list(epoch_loss.astype(np.float64))
    return table
