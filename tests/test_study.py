"""The whole study through Kedro's own session, runner, catalog and versioning, on the
`smoke` environment (digits, tiny networks), with a real MLflow SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient

from longtail.estimate import influence, memorization
from longtail.params import InvalidParameters
from longtail.pipelines.scoring.nodes import report_pairs

STAGES = ("ingestion", "sampling", "training", "scoring", "diagnostics", "removal", "reporting")


def run_study(root: Path, **kwargs: object) -> None:
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env="smoke", runtime_params=kwargs.pop("runtime_params", None)) as session:
        session.run(**kwargs)


def catalog(root: Path):
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env="smoke") as session:
        return session.load_context().catalog


def mlflow_runs(root: Path) -> tuple[list, list]:
    """(parent runs, child runs) of the project's store, oldest parent first."""
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("longtail")
    runs = client.search_runs([experiment.experiment_id], max_results=5000, order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


@pytest.fixture(scope="module")
def study(module_project: Path) -> Path:
    """A project copy in which the default pipeline has run once on the smoke configuration."""
    run_study(module_project)
    return module_project


def test_all_six_pipelines_are_registered() -> None:
    from kedro.framework.project import configure_project  # noqa: PLC0415

    from longtail.pipeline_registry import register_pipelines  # noqa: PLC0415

    configure_project("longtail")
    pipelines = register_pipelines()
    assert set(STAGES) <= set(pipelines)
    default_nodes = {n.name for n in pipelines["__default__"].nodes}
    assert default_nodes == set().union(*({n.name for n in pipelines[s].nodes} for s in STAGES))


def test_outputs_have_the_documented_schemas(study: Path) -> None:
    data = catalog(study)
    examples = data.load("examples")
    assert {"split", "index", "label", "original_label", "noisy"} <= set(examples.columns)
    n_train = int((examples["split"] == "train").sum())
    n_test = int((examples["split"] == "test").sum())
    masks = data.load("subset_masks")
    assert masks.shape == (24, n_train) and masks.dtype == np.bool_
    for name, width in [("train_correct", n_train), ("train_true_prob", n_train), ("test_correct", n_test), ("test_true_prob", n_test)]:
        assert data.load(name).shape == (24, width), name
    scores = data.load("memorization_scores")
    assert {"index", "label", "mem", "mem_se", "p_in", "p_out", "n_in", "n_out", "mem_soft"} <= set(scores.columns)
    assert scores["index"].tolist() == list(range(n_train))
    pairs = data.load("influence_pairs")
    assert list(pairs.columns[:4]) == ["train_index", "test_index", "infl", "infl_se"] and "mem" in pairs
    curve = data.load("removal_curve")
    assert list(curve.columns) == ["threshold", "strategy", "n_removed", "train_fraction", "repeat", "test_accuracy"]
    assert set(curve["strategy"]) == {"memorization", "random"}
    assert len(curve) == 2 * 2 * 2  # thresholds x strategies x repeats


def test_scores_equal_the_estimators_on_the_stored_arrays(study: Path) -> None:
    data = catalog(study)
    masks, correct = data.load("subset_masks"), data.load("train_correct")
    scores = data.load("memorization_scores")
    expected = memorization(masks, correct)
    np.testing.assert_allclose(scores["mem"], expected["mem"], equal_nan=True)
    soft = memorization(masks, data.load("train_true_prob"))
    np.testing.assert_allclose(scores["mem_soft"], soft["mem"], equal_nan=True)
    pairs = data.load("influence_pairs")
    examples = data.load("examples")
    labels = tuple(examples[examples["split"] == s].sort_values("index")["label"].to_numpy() for s in ("train", "test"))
    direct = influence(masks, data.load("test_correct"), threshold=0.15, top_k=2, labels=labels)  # same-class pairs
    pd.testing.assert_frame_equal(pairs[direct.columns].reset_index(drop=True), direct)
    np.testing.assert_allclose(pairs["mem"], scores["mem"].to_numpy()[pairs["train_index"]], equal_nan=True)
    reported = data.load("reported_pairs")
    assert reported.attrs["selection"]["selection"] == "controlled"
    assert len(reported) <= len(pairs) and (reported["q_value"] <= 0.1).all()
    # The controlled rule written out: both cut-offs, and the pair's and its training example's
    # q-values within the FDR. The smoke study's 24 models leave every q-value at 1, so this
    # compares two empty lists: it catches a pair reported wrongly, not one missed.
    rule = (pairs["infl"] >= 0.15) & (pairs["mem"] >= 0.25) & (pairs["mem_q"] <= 0.1) & (pairs["q_value"] <= 0.1)
    keys = ["train_index", "test_index"]
    assert sorted(map(tuple, reported[keys].to_numpy())) == sorted(map(tuple, pairs.loc[rule, keys].to_numpy()))
    # The paper's rule on the same table reports the pairs past both cut-offs (dozens here), none missed.
    paper = report_pairs(pairs, data.load("params:scoring").model_copy(update={"selection": "paper"}))
    cut = (pairs["infl"] >= 0.15) & (pairs["mem"] >= 0.25)
    assert cut.sum() > 0
    assert sorted(map(tuple, paper[keys].to_numpy())) == sorted(map(tuple, pairs.loc[cut, keys].to_numpy()))


def test_subset_models_learn(study: Path) -> None:
    runs = catalog(study).load("subset_model_runs")
    assert len(runs) == 24
    assert runs["metric_test_accuracy"].mean() > 0.85
    assert runs["metric_held_out_accuracy"].mean() > 0.8


def test_mlflow_holds_one_child_run_per_trained_model(study: Path) -> None:
    parents, children = mlflow_runs(study)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.params["sampling.n_models"] == "24"
    # each parameter block is logged flattened only, never also as one text param or tag
    assert parent.data.params["training.lr"] == "0.05" and parent.data.params["scoring.fdr"] == "0.1"
    blocks = {"dataset", "sampling", "training", "scoring", "removal", "reporting", "diagnostics"}
    assert not blocks & (set(parent.data.params) | set(parent.data.tags))
    assert "training_metrics.subset_models_test_accuracy_mean" in parent.data.metrics
    assert {"scoring_metrics.pairs_reported", "scoring_metrics.examples_memorized"} <= set(parent.data.metrics)
    sources = pd.Series([c.data.tags["longtail.source"] for c in children]).value_counts().to_dict()
    assert sources == {"subset": 24, "removal": 8, "proxy": 2}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    child = children[0]
    assert {"test_accuracy", "subset_accuracy", "final_loss", "epoch_loss"} <= set(child.data.metrics)
    assert {"model_index", "subset_size", "seed", "model", "lr"} <= set(child.data.params)
    client = MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    assert len(client.get_metric_history(child.info.run_id, "epoch_loss")) == 4
    logged = {a.path for folder in ("scores", "figures") for a in client.list_artifacts(parent.info.run_id, folder)}
    assert {"scores/memorization_scores.parquet", "scores/influence_pairs.parquet", "scores/removal_curve.parquet"} <= logged
    assert {f"figures/{name}.png" for name in ("memorization_histogram", "memorization_grid", "influence_pairs", "removal_curve")} <= logged


def test_figures_are_versioned_pngs(study: Path) -> None:
    for name in ("memorization_histogram", "memorization_grid", "influence_pairs", "removal_curve"):
        files = list((study / "data" / "08_reporting" / f"{name}.png").glob("*/*.png"))
        assert len(files) == 1, name
        assert files[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_is_a_versioned_page_logged_to_the_study_run(study: Path, tmp_path: Path) -> None:
    (page,) = (study / "data" / "08_reporting" / "study_report.html").glob("*/study_report.html")
    (parent,), _ = mlflow_runs(study)
    client = MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "report")] == ["report/study_report.html"]
    logged = Path(client.download_artifacts(parent.info.run_id, "report/study_report.html", str(tmp_path)))
    assert logged.read_bytes() == page.read_bytes()
    text = page.read_text(encoding="utf-8")
    assert parent.info.run_id in text and parent.info.run_name in text  # the page names its own run


def test_scoring_reruns_alone_and_earlier_versions_stay_loadable(study: Path) -> None:
    first_version = next((study / "data/07_model_output/memorization_scores.parquet").iterdir()).name
    first = catalog(study).load("memorization_scores")
    masks_before = sorted((study / "data/05_model_input/subset_masks.npy").iterdir())
    run_study(study, pipeline_names=["scoring"], runtime_params={"scoring": {"top_k": 1}})
    versions = sorted(p.name for p in (study / "data/07_model_output/memorization_scores.parquet").iterdir())
    assert len(versions) == 2 and versions[0] == first_version
    assert sorted((study / "data/05_model_input/subset_masks.npy").iterdir()) == masks_before  # nothing retrained
    data = catalog(study)
    pd.testing.assert_frame_equal(data.load("memorization_scores", version=first_version), first)
    pd.testing.assert_frame_equal(data.load("memorization_scores"), first)  # same inputs, same scores
    assert len(data.load("influence_pairs")) < len(data.load("influence_pairs", version=first_version))


def test_bad_parameters_stop_before_anything_is_written(project: Path) -> None:
    with pytest.raises(InvalidParameters) as error:
        run_study(project, runtime_params={"sampling": {"subset_ratio": 1.5, "n_models": 1}, "dataset": {"name": "cifar"}})
    message = str(error.value)
    assert "sampling.subset_ratio=1.5" in message and "sampling.n_models=1" in message and "dataset.name='cifar'" in message
    assert [p for p in (project / "data").rglob("*") if p.is_file()] == []
    if (project / "mlflow.db").exists():
        assert mlflow_runs(project) == ([], [])


def test_kedro_viz_builds_the_lineage_of_the_six_pipelines(study: Path) -> None:
    env = {**os.environ, "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true"}
    kedro = Path(sys.executable).with_name("kedro")
    result = subprocess.run(
        [str(kedro), "viz", "build", "--include-previews"], cwd=study, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import json  # noqa: PLC0415

    main = json.loads((study / "build" / "api" / "main").read_text())
    assert set(STAGES) <= {p["id"] for p in main["pipelines"]}
    ids = {n["name"]: n["id"] for n in main["nodes"]}
    assert {"memorization_scores", "influence_pairs", "removal_curve", "subset_masks", "train_correct"} <= set(ids)
    previews = {
        name: json.loads((study / "build" / "api" / "nodes" / ids[name]).read_text()).get("preview_type")
        for name in ("memorization_scores", "subset_model_runs", "memorization_grid", "train_correct")
    }
    assert previews == {
        "memorization_scores": "TablePreview",
        "subset_model_runs": "TablePreview",
        "memorization_grid": "ImagePreview",
        "train_correct": "JSONPreview",
    }
    assert "circular" not in result.stdout + result.stderr
