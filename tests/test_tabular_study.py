"""A user's own table and own module through the whole study: `kedro run` (every pipeline) on
scikit-learn's wine table written to parquet, with the two-layer module of
tests/custom_models.py named by import path, in a real process with the tests folder on
PYTHONPATH, as a user would put their package there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_wine

from longtail.estimate import memorization
from longtail.figures import rows_table_figure
from longtail.pipelines.reporting.nodes import most_memorized_rows, strongest_pairs

from tests.conftest import KEDRO

TESTS = Path(__file__).resolve().parent
MODEL = "custom_models:two_layer"
FIGURES = ("memorization_histogram", "memorization_grid", "influence_pairs", "removal_curve")


def wine_table() -> pd.DataFrame:
    """Wine with text labels and a shuffled row order, so that row ids and class mapping matter."""
    bunch = load_wine(as_frame=True)
    frame = bunch.frame.assign(cultivar=[f"cultivar_{t}" for t in bunch.target]).drop(columns="target")
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)


def kedro_run(root: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), "DO_NOT_TRACK": "1"}
    result = subprocess.run(
        [KEDRO, "run", "--env", "table", *args], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def study(module_project: Path) -> Path:
    """A project copy with a `table` environment (the smoke study on wine.parquet, the custom
    module) in which `kedro run` has run once."""
    root = module_project
    wine_table().to_parquet(root / "data" / "wine.parquet")
    params = yaml.safe_load((root / "conf" / "smoke" / "parameters.yml").read_text())
    params["dataset"] = {**params["dataset"], "name": "table", "path": "data/wine.parquet", "label_column": "cultivar"}
    params["training"] = {**params["training"], "model": MODEL, "lr": 0.1}
    (root / "conf" / "table").mkdir()
    (root / "conf" / "table" / "parameters.yml").write_text(yaml.safe_dump(params))
    kedro_run(root)
    return root


def catalog(root: Path):
    """The study's catalog, opened in this process: like the run, it checks the parameters,
    whose model must be importable."""
    if str(TESTS) not in sys.path:
        sys.path.append(str(TESTS))
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env="table") as session:
        return session.load_context().catalog


def runs(root: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("longtail")
    return client.search_runs([experiment.experiment_id], max_results=5000, order_by=["attributes.start_time ASC"])


def test_the_examples_keep_the_file_rows_and_the_class_names(study: Path) -> None:
    data, table = catalog(study), wine_table()
    examples = data.load("examples")
    assert sorted(examples["row_id"]) == list(range(len(table)))
    np.testing.assert_array_equal(examples["class_name"], table["cultivar"].to_numpy()[examples["row_id"]])
    train = examples[examples["split"] == "train"]
    images = data.load("train_images")
    assert images.shape == (len(train), 13, 1, 1)
    np.testing.assert_allclose(images[:, 0, 0, 0], table["alcohol"].to_numpy()[train["row_id"]], rtol=1e-6)


def test_the_custom_module_trains_every_model_and_the_scores_follow(study: Path) -> None:
    data = catalog(study)
    models = data.load("subset_model_runs")
    assert len(models) == 24 and set(models["param_model"]) == {MODEL}
    assert models["metric_test_accuracy"].mean() > 0.85  # standardised wine is easy for a two-layer net
    masks, correct = data.load("subset_masks"), data.load("train_correct")
    np.testing.assert_allclose(data.load("memorization_scores")["mem"], memorization(masks, correct)["mem"], equal_nan=True)
    parent, *children = runs(study)
    sources = pd.Series([c.data.tags["longtail.source"] for c in children]).value_counts().to_dict()
    assert sources == {"subset": 24, "removal": 8, "proxy": 2}
    assert {c.data.params["model"] for c in children} == {MODEL}
    assert parent.data.params["training.model"] == MODEL


def test_the_image_figures_become_tables_of_rows(study: Path) -> None:
    for name in FIGURES:
        files = list((study / "data" / "08_reporting" / f"{name}.png").glob("*/*.png"))
        assert len(files) == 1 and files[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    data = catalog(study)
    scores, examples = data.load("memorization_scores"), data.load("examples")
    rows = most_memorized_rows(scores, examples, 5)
    finite = scores.dropna(subset=["mem"])
    assert rows["mem"].tolist() == sorted(finite["mem"], reverse=True)[:5]
    train = examples[examples["split"] == "train"].set_index("index")
    best = finite.loc[finite["mem"].idxmax()]
    assert rows["row_id"].iloc[0] == train.loc[int(best["index"]), "row_id"]
    pairs = data.load("influence_pairs")
    strongest = strongest_pairs(pairs, examples, 3)
    assert strongest["infl"].tolist() == sorted(pairs["infl"], reverse=True)[:3]


def test_a_rerun_reuses_the_custom_models_shards(study: Path) -> None:
    shards = sorted((study / "data" / "06_models" / "shards").glob("*/shard-*.npz"))
    assert len(shards) == 3  # 24 models, 8 per shard, under one experiment id
    kedro_run(study, "--pipelines", "training")
    rerun = [r for r in runs(study) if "mlflow.parentRunId" not in r.data.tags][-1]
    assert rerun.data.metrics["training_metrics.models_trained_in_this_run"] == 0
    assert rerun.data.metrics["training_metrics.models_reused_from_store"] == 24
    assert sorted((study / "data" / "06_models" / "shards").glob("*/shard-*.npz")) == shards


def test_the_rows_table_figure_shows_every_cell() -> None:
    rows = pd.DataFrame({"row_id": [7, 3], "class": ["b", "a"], "mem": [0.91234, 0.5]})
    figure = rows_table_figure(rows, "Most memorized training rows")
    (table,) = figure.axes[0].tables
    cells = {key: cell.get_text().get_text() for key, cell in table.get_celld().items()}
    assert [cells[(0, c)] for c in range(3)] == ["row_id", "class", "mem"]
    assert [cells[(1, c)] for c in range(3)] == ["7", "b", "0.912"] and cells[(2, 2)] == "0.500"
    empty = rows_table_figure(rows.head(0), "Most memorized training rows")
    assert not empty.axes[0].tables and "no rows to show" in empty.axes[0].texts[0].get_text()
