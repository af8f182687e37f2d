"""The diagnostics inside the default study (smoke environment): their tables and figures in
the catalog and in the parent MLflow run, and the analysis notebook executed against them."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient

from longtail.diagnostics import DETECTION_COLUMNS, PROXY_AGREEMENT_COLUMNS
from tests.test_study import catalog, mlflow_runs, study  # noqa: F401 (study: the module's smoke study)

NOTEBOOK = Path(__file__).resolve().parents[3] / "notebooks" / "explore_memorization.ipynb"
TABLES = ("proxy_scores", "label_noise_detection", "agreement", "convergence", "proxy_agreement", "subset_fit")
FIGURES = ("label_noise_detection", "convergence")


def test_the_default_pipeline_includes_the_diagnostics() -> None:
    from kedro.framework.project import configure_project  # noqa: PLC0415

    from longtail.pipeline_registry import register_pipelines  # noqa: PLC0415

    configure_project("longtail")
    pipelines = register_pipelines()
    assert {n.name for n in pipelines["diagnostics"].nodes} <= {n.name for n in pipelines["__default__"].nodes}


def test_diagnostics_tables_have_their_columns(study: Path) -> None:
    data = catalog(study)
    n_train = len(data.load("memorization_scores"))
    proxies = data.load("proxy_scores")
    assert list(proxies.columns) == ["index", "label", "noisy", "cumulative_accuracy", "mean_true_prob"]
    assert len(proxies) == n_train
    detection = data.load("label_noise_detection")  # the smoke study flips 5% of the labels
    assert list(detection.columns) == DETECTION_COLUMNS and len(detection) == 5
    assert detection["roc_auc"].between(0, 1).all()
    assert data.load("convergence")["n_models"].tolist() == [8, 16, 24]
    agreement = data.load("agreement")
    assert agreement[["n_models", "models_per_half"]].iloc[0].tolist() == [24, 12]
    assert list(data.load("proxy_agreement").columns) == PROXY_AGREEMENT_COLUMNS
    assert len(data.load("proxy_model_runs")) == 2
    fit = data.load("subset_fit")  # 4 epochs of digits fit most of each subset, not all (the smoke bound is 0.85)
    assert fit[["n_models", "min_subset_fit", "fits"]].iloc[0].tolist() == [24, 0.85, True]
    assert 0.85 <= fit["mean_subset_accuracy"].iloc[0] < 1 and fit["noisy_subset_accuracy"].iloc[0] < fit["mean_subset_accuracy"].iloc[0]


def test_the_parent_mlflow_run_holds_the_diagnostics(study: Path) -> None:
    parents, children = mlflow_runs(study)
    parent = parents[-1]
    client = MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "diagnostics")}
    assert {f"diagnostics/{name}.parquet" for name in TABLES} <= logged
    assert {f"diagnostics/{name}.png" for name in FIGURES} <= logged
    metrics = parent.data.metrics
    assert {"diagnostics_metrics.label_noise_roc_auc_mem", "diagnostics_metrics.halves_spearman_mem", "diagnostics_metrics.subset_fit_mean_accuracy"} <= set(metrics)
    assert metrics["training_metrics.subset_models_subset_accuracy_mean"] == metrics["diagnostics_metrics.subset_fit_mean_accuracy"]
    assert sum(c.data.tags["longtail.source"] == "proxy" for c in children) == 2


def test_the_notebook_runs_against_the_study(study: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Executed in a kernel of this interpreter, from a notebooks/ folder of the project copy
    (where ``%load_ext kedro.ipython`` finds the project), on the smoke environment."""
    monkeypatch.setenv("KEDRO_ENV", "smoke")
    folder = study / "notebooks"
    folder.mkdir(exist_ok=True)
    shutil.copy(NOTEBOOK, folder)
    notebook = nbformat.read(folder / NOTEBOOK.name, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "strip the outputs"
    notebook.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    assert notebook.cells[-1].outputs[0]["text"].strip() == sys.executable
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 8  # histogram, most/least memorized, pairs, removal, detection, convergence, proxy
