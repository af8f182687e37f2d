"""Batched MLflow logging of per-model child runs, and what to do when the store is away.

Every trained model becomes a child run of the active (parent) run. Each child costs three
store calls (create, one ``log_batch`` with all its params, metrics and per-epoch history,
terminate), so that tracking stays small next to training.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param, Run, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from longtail.errors import UserFacingError

logger = logging.getLogger(__name__)

PARAM_PREFIX = "param_"
METRIC_PREFIX = "metric_"
HISTORY_COLUMN = "epoch_loss"
RUN_NAME_COLUMN = "run_name"
PIPELINES_TAG = "longtail.pipelines"
# (metric, what it is, format): the numbers the parent run's description leads with
HEADLINE_METRICS = (
    ("training_metrics.subset_models_test_accuracy_mean", "mean test accuracy of the subset models", "{:.4f}"),
    ("scoring_metrics.examples_memorized", "training examples memorized", "{:,.0f}"),
    ("scoring_metrics.pairs_reported", "high-influence pairs reported", "{:,.0f}"),
    ("diagnostics_metrics.halves_spearman_mem", "split-half agreement of mem (Spearman)", "{:.3f}"),
    ("diagnostics_metrics.halves_jaccard_pairs", "split-half agreement of the reported pairs (Jaccard)", "{:.3f}"),
)
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_PER_BATCH = 100


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


def _run_names(runs: pd.DataFrame, source: str) -> list[str]:
    """The ``run_name`` column when the table has one, else ``<source>-<model index>``; subset
    models (hundreds to thousands) get four digits so that sorting by name follows the index."""
    if RUN_NAME_COLUMN in runs:
        return runs[RUN_NAME_COLUMN].astype(str).tolist()
    width = 4 if source == "subset" else 1
    return [f"{source}-{int(index):0{width}d}" for index in runs["model_index"]]


def log_model_runs(runs: pd.DataFrame, source: str, parent: Run | None = None) -> int:
    """Log each row of ``runs`` as a child run of ``parent`` (default: the active MLflow run);
    return how many.

    Columns named ``param_*`` become params, ``metric_*`` metrics, and the list column
    ``epoch_loss`` a metric history (one step per epoch); ``run_name``, when present, names
    the runs (``_run_names``). Without a parent run (e.g. a pipeline run with tracking
    disabled) nothing is logged.
    """
    parent = parent or mlflow.active_run()
    if parent is None:
        logger.info("no active MLflow run: %d %s runs not logged", len(runs), source)
        return 0
    client = MlflowClient()
    experiment_id = parent.info.experiment_id
    started = time.perf_counter()
    timestamp = int(time.time() * 1000)
    for name, (_, row) in zip(_run_names(runs, source), runs.iterrows(), strict=True):
        tags = {
            MLFLOW_PARENT_RUN_ID: parent.info.run_id,
            MLFLOW_RUN_NAME: name,
            "longtail.source": source,
        }
        run_id = client.create_run(experiment_id, start_time=timestamp, tags=tags).info.run_id
        params = _params(row)
        for number, metrics in enumerate(_chunks(_metrics(row, timestamp), _MAX_METRICS_PER_BATCH)):
            client.log_batch(run_id, metrics=metrics, params=params if number == 0 else [])
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    logger.info("logged %d %s runs to MLflow in %.1f s", len(runs), source, time.perf_counter() - started)
    return len(runs)


def study_run_name(parameters: dict[str, Any]) -> str:
    """What a study's parent run is called in the runs table: its dataset, number of models,
    network and seeds, e.g. ``mnist5k · 500 × mlp 512-256 · seed 0`` (two seeds, subsets' then
    training's, when they differ)."""
    training, sampling = parameters["training"], parameters["sampling"]
    network = str(training["model"])
    if network == "mlp":
        network += " " + "-".join(str(size) for size in training["hidden_sizes"])
    seeds = [str(seed) for seed in dict.fromkeys((sampling["seed"], training["seed"]))]
    seed = ("seed " if len(seeds) == 1 else "seeds ") + "/".join(seeds)
    return f"{parameters['dataset']['name']} · {sampling['n_models']} × {network} · {seed}"


def add_missing_experiment_tags(client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> list[str]:
    """Give an existing experiment the ``tags`` it lacks (an experiment made before they were
    configured); tags it already has, with any value, are left alone. Returns the keys set."""
    present = client.get_experiment(experiment_id).tags
    missing = [key for key in tags if key not in present]
    for key in missing:
        client.set_experiment_tag(experiment_id, key, str(tags[key]))
    return missing


def study_summary(metrics: dict[str, float]) -> str:
    """The parent run's description (Markdown, shown at the top of its page): the headline
    metrics among ``metrics`` (those a partial run did not compute are left out) and where
    the report and the figures are."""
    lines = [f"| {label} | {fmt.format(metrics[key])} |" for key, label, fmt in HEADLINE_METRICS if key in metrics]
    table = ["| headline | |", "|---|---|", *lines] if lines else []
    where = "The report: **Artifacts** tab, `report/study_report.html`; figures in `figures/` (diagnostics in `diagnostics/`)."
    return "\n".join([*table, "", where])


def runs_table_link(tracking_uri: str, experiment_id: str) -> str:
    """Where the MLflow UI shows the experiment's runs table. MLflow 3's UI opens an experiment
    on its GenAI pages unless the link asks for ``workflowType=machine_learning``. A local
    store has no server: the link is the one ``make mlflow-ui`` serves."""
    page = f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    if urlparse(tracking_uri).scheme in ("http", "https"):
        return f"{tracking_uri.rstrip('/')}/{page}"
    return f"make mlflow-ui, then http://127.0.0.1:5000/{page}"


class BackgroundLogger:
    """Logs tables of model runs on one background thread (the SQLite store wants a single
    writer), so that training goes on while the previous shard's runs are written. Leaving the
    ``with`` block waits for every pending table and re-raises a logging error."""

    def __init__(self) -> None:
        self._parent = mlflow.active_run()  # MLflow's active run is thread-local: capture it here
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-logger")
        self._pending: list[Future] = []

    def submit(self, runs: pd.DataFrame, source: str) -> None:
        self._pending.append(self._pool.submit(log_model_runs, runs, source, self._parent))

    def __enter__(self) -> BackgroundLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pool.shutdown(wait=True)


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


class TrackingUnavailable(UserFacingError):
    """The MLflow tracking server does not answer."""


def server_answers(uri: str, timeout_s: float) -> str | None:
    """None when the tracking store at ``uri`` answers (always for local stores), else why not."""
    if urlparse(uri).scheme not in ("http", "https"):
        return None
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None  # it answered, if only to refuse this path
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def _copy_run(source: MlflowClient, target: MlflowClient, run: Any, experiment_id: str, parents: dict[str, str]) -> str:
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("longtail.uploaded")}
    if MLFLOW_PARENT_RUN_ID in tags:
        tags[MLFLOW_PARENT_RUN_ID] = parents.get(tags[MLFLOW_PARENT_RUN_ID], tags[MLFLOW_PARENT_RUN_ID])
    new_id = target.create_run(experiment_id, start_time=run.info.start_time, tags=tags).info.run_id
    metrics = [m for key in run.data.metrics for m in source.get_metric_history(run.info.run_id, key)]
    params = [Param(k, v) for k, v in run.data.params.items()]
    for start in range(0, len(params), _MAX_PARAMS_PER_BATCH):
        target.log_batch(new_id, params=params[start : start + _MAX_PARAMS_PER_BATCH])
    for chunk in _chunks(metrics, _MAX_METRICS_PER_BATCH):
        target.log_batch(new_id, metrics=chunk)
    with tempfile.TemporaryDirectory() as folder:
        if source.list_artifacts(run.info.run_id):
            target.log_artifacts(new_id, source.download_artifacts(run.info.run_id, "", folder))
    target.set_terminated(new_id, run.info.status, end_time=run.info.end_time)
    source.set_tag(run.info.run_id, "longtail.uploaded_to", new_id)
    return new_id


def upload_runs(source_uri: str, target_uri: str, experiment: str = "longtail") -> int:
    """Copy the runs of ``experiment`` that were kept in a local store (``tracking.required:
    false``) to another store, parents before children, with params, metric histories, tags
    and artefacts (an experiment created there gets the local one's tags); each copied run is
    tagged so that a second upload skips it."""
    source, target = MlflowClient(source_uri), MlflowClient(target_uri)
    found = source.get_experiment_by_name(experiment)
    if found is None:
        return 0
    destination = target.get_experiment_by_name(experiment)
    experiment_id = destination.experiment_id if destination else target.create_experiment(experiment, tags=found.tags)
    runs = source.search_runs([found.experiment_id], "", max_results=50000, order_by=["attributes.start_time ASC"])
    pending = [r for r in runs if "longtail.uploaded_to" not in r.data.tags]
    pending.sort(key=lambda r: MLFLOW_PARENT_RUN_ID in r.data.tags)
    parents: dict[str, str] = {}
    for run in pending:
        parents[run.info.run_id] = _copy_run(source, target, run, experiment_id, parents)
    return len(pending)


def main(argv: list[str] | None = None) -> None:
    """``python -m longtail.tracking upload SOURCE_URI TARGET_URI``."""
    parser = argparse.ArgumentParser(prog="python -m longtail.tracking")
    commands = parser.add_subparsers(dest="command", required=True)
    upload = commands.add_parser("upload", help="copy runs kept in a local store to a tracking server")
    upload.add_argument("source_uri", help="e.g. sqlite:///mlflow-offline.db")
    upload.add_argument("target_uri", help="e.g. http://127.0.0.1:5000")
    upload.add_argument("--experiment", default="longtail")
    args = parser.parse_args(argv)
    print(f"uploaded {upload_runs(args.source_uri, args.target_uri, args.experiment)} runs")


if __name__ == "__main__":
    main()
