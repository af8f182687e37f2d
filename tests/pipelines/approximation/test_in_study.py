"""``kedro run --pipelines approximation`` after the default study (smoke environment, 24
models), then after the study grows to 25 models: the versioned tables and figure, logged to
the run's parent MLflow run, and counts above the study's models skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from longtail.approx.measure import AGREEMENT_COLUMNS
from longtail.approx.tables import INFLUENCE_COLUMNS, MEMORIZATION_COLUMNS
from longtail.estimate import memorization
from tests.conftest import run_kedro
from tests.test_study import catalog, mlflow_runs, run_study, study  # noqa: F401 (study: the module's smoke study)

TABLES = ("approximate_memorization", "approximate_influence", "approximation_agreement")


def test_the_approximation_pipeline_runs_on_request_only() -> None:
    from kedro.framework.project import configure_project  # noqa: PLC0415

    from longtail.pipeline_registry import register_pipelines  # noqa: PLC0415

    configure_project("longtail")
    pipelines = register_pipelines()
    assert not {n.name for n in pipelines["approximation"].nodes} & {n.name for n in pipelines["__default__"].nodes}


def test_after_the_default_study(study: Path) -> None:  # noqa: F811
    run_study(study, pipeline_names=["approximation"])
    data = catalog(study)
    mem, infl, agreement = (data.load(name) for name in TABLES)
    assert list(mem.columns) == MEMORIZATION_COLUMNS and list(infl.columns) == INFLUENCE_COLUMNS
    assert list(agreement.columns) == AGREEMENT_COLUMNS
    subset = ["fz-8", "margin-8", "eb-8"]  # 25 and 50 > the smoke study's 24 models: skipped
    proxies = ["learning_speed", "forgetting", "el2n", "grand", "curvature", "tracin_self"]
    assert mem["method"].unique().tolist() == subset + proxies
    assert infl["method"].unique().tolist() == subset + ["tracin", "nn_features", "nn_input"]
    n_train = len(data.load("train_labels"))
    assert (mem.groupby("method").size() == n_train).all()
    assert infl.groupby(["method", "test_index"]).size().max() == 20
    masks, correct = data.load("subset_masks"), data.load("train_correct")
    fz = mem[mem["method"] == "fz-8"].sort_values("index")["score"].to_numpy()
    np.testing.assert_array_equal(fz, memorization(masks[:8], correct[:8])["mem"].to_numpy())
    margins = data.load("train_margin")
    assert margins.shape == masks.shape and margins.dtype == np.float32
    np.testing.assert_array_equal(margins > 0, correct)
    assert (agreement.loc[agreement["method"].isin(subset), "cost_models"] == 8).all()
    assert agreement["roc_auc"].dropna().between(0, 1).all() and agreement["mae"].notna().sum() == 3  # mem itself: fz, margin, eb
    full_runs = agreement.set_index(["method", "target"]).loc[[("forgetting", "memorization"), ("tracin", "influence")]]
    assert (full_runs["cost_models"] >= 2 / 0.7).all()  # two full-data runs, each 1 / subset_ratio
    parents, _ = mlflow_runs(study)
    parent = parents[-1]
    assert parent.data.tags["longtail.pipelines"] == "approximation"
    client = MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "approximation")}
    assert {f"approximation/{name}.parquet" for name in TABLES} | {"approximation/approximation.png"} <= logged
    assert "approximation_metrics.fz-8_precision_at_r_mem" in parent.data.metrics


def test_after_the_study_grows_to_25_models_from_the_command_line(study: Path) -> None:  # noqa: F811
    result = run_kedro(
        study, "run", "--env", "smoke", "--pipelines", "sampling,training,approximation", "--params", "sampling.n_models=25"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    agreement = catalog(study).load("approximation_agreement")
    assert agreement["method"].unique().tolist()[:6] == ["fz-8", "margin-8", "eb-8", "fz-25", "margin-25", "eb-25"]
    assert "fz-50" not in set(agreement["method"])
    memorized = agreement[(agreement["method"] == "fz-25") & (agreement["target"] == "memorization")].iloc[0]
    assert memorized["r_mem"] > 0  # fz-25 from all 25 models is the reference itself
    assert memorized[["precision_at_r_mem", "roc_auc", "mae"]].tolist() == [1.0, 1.0, 0.0]
