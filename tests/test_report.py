"""study_report.html from a study whose answer is planted: which examples are memorized and
which test example each one explains are known, so the page must list exactly those."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pandas as pd
import pytest

from longtail import diagnostics as stats
from longtail.estimate import Selection, influence, memorization, with_memorization
from longtail.hooks import kedro_command
from longtail.pipelines.diagnostics.nodes import measure_agreement, measure_convergence
from longtail.pipelines.reporting.nodes import write_study_report
from longtail.pipelines.scoring.nodes import report_pairs
from longtail.report import findings
from longtail.report.findings import Removal
from tests.conftest import base_parameters, checked_block

N_MODELS, N_TRAIN, N_TEST, N_CLASSES, N_PLANTED = 300, 60, 24, 3, 12


@pytest.fixture(scope="module")
def study() -> dict:
    """Training examples 0..11 are right only when trained on (memorized); test example j < 12
    is right only when training example j was in the subset (j's only support). Everything
    else is right 90% of the time, whatever the subset."""
    rng = np.random.default_rng(0)
    masks = rng.random((N_MODELS, N_TRAIN)) < 0.7
    train_correct = rng.random((N_MODELS, N_TRAIN)) < 0.9
    train_correct[:, :N_PLANTED] = masks[:, :N_PLANTED]
    test_correct = rng.random((N_MODELS, N_TEST)) < 0.9
    test_correct[:, :N_PLANTED] = masks[:, :N_PLANTED]
    train_labels, test_labels = np.arange(N_TRAIN) % N_CLASSES, np.arange(N_TEST) % N_CLASSES
    examples = pd.concat(
        [
            pd.DataFrame({"split": split, "index": np.arange(n), "source_index": np.arange(n), "original_label": labels,
                          "label": labels, "noisy": np.arange(n) == 5 if split == "train" else np.zeros(n, bool)})
            for split, n, labels in (("train", N_TRAIN, train_labels), ("test", N_TEST, test_labels))
        ],
        ignore_index=True,
    )
    scoring = checked_block("scoring", {**base_parameters()["scoring"], "top_k": 2})
    diagnostics = checked_block("diagnostics", {**base_parameters()["diagnostics"], "model_counts": [100]})
    scores = memorization(masks, train_correct).assign(index=np.arange(N_TRAIN), label=train_labels)
    pairs = with_memorization(
        influence(masks, test_correct, threshold=0.15, top_k=2, labels=(train_labels, test_labels)), scores
    )
    convergence = measure_convergence(masks, train_correct, test_correct, examples, scoring, diagnostics)
    noisy = np.arange(N_TRAIN) == 5
    detection = stats.detection_table(noisy, scores[["mem"]].assign(p_out=-scores["p_out"]), 5)
    tables = {
        "examples": examples,
        "train_images": rng.random((N_TRAIN, 1, 6, 6)).astype(np.float32),
        "test_images": rng.random((N_TEST, 1, 6, 6)).astype(np.float32),
        "memorization_scores": scores,
        "influence_pairs": pairs,
        "reported_pairs": report_pairs(pairs, scoring),
        "subset_model_runs": pd.DataFrame({"metric_test_accuracy": test_correct.mean(1), "param_subset_size": 42, "param_precision": "fp32"}),
        "training_provenance": {"experiment": "0123456789abcdef"},
        "removal_curve": pd.DataFrame({
            "threshold": [0.5] * 4, "strategy": ["memorization", "random"] * 2, "n_removed": 12,
            "train_fraction": 0.8, "repeat": [0, 0, 1, 1], "test_accuracy": [0.50, 0.90, 0.52, 0.92],
        }),
        "agreement": measure_agreement(convergence),
        "convergence": convergence,
        "label_noise_detection": detection,
    }
    return {"tables": tables, "scoring": scoring}


def render(study: dict, **reporting: object) -> str:
    params = base_parameters()
    blocks = {name: checked_block(name, params[name]) for name in ("dataset", "sampling", "training")}
    report = checked_block("reporting", {**params["reporting"], "report_per_class": 3, "report_pairs_per_example": 2, **reporting})
    run = {"study": "planted", "started": time.time() - 75, "commands": ["kedro run --env smoke"], "artefacts": {"shard_store": "data/06_models/shards/<experiment>/"}}
    return write_study_report(run, **study["tables"], **blocks, scoring=study["scoring"], reporting=report)


def page_data(page: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="study-data">(.*?)</script>', page, re.S).group(1))


def test_the_page_lists_exactly_the_planted_memorized_examples_and_pairs(study: dict) -> None:
    data = page_data(render(study))
    rows = [dict(zip(data["columns"], row)) for row in data["rows"]]
    memorized = {r["train"] for r in rows if r["kind"] == "example" and r["reported"]}
    assert memorized == set(range(N_PLANTED))  # and the table holds every one of them
    reported = {(r["train"], r["test"]) for r in rows if r["kind"] == "pair" and r["reported"]}
    assert reported == {(j, j) for j in range(N_PLANTED)}
    # each row's class is its training example's label
    assert all(r["class"] == str(r["train"] % N_CLASSES) for r in rows)


def test_each_class_shows_its_most_memorized_examples_and_each_its_strongest_pairs(study: dict) -> None:
    page = render(study)
    scores = study["tables"]["memorization_scores"]
    for label in range(N_CLASSES):
        block = re.search(rf'<div class="class" data-class="{label}">(.*?)</div><div class="pairs"', page, re.S).group(1)
        shown = [int(i) for i in re.findall(r'data-train="(\d+)"', block)]
        expected = scores[scores["label"] == label].sort_values(["mem", "index"], ascending=[False, True]).head(3)
        assert shown == expected["index"].tolist()
    # example 0's panel: test example 0 first (infl near 1), reported; at most 2 pairs
    panel = re.search(r'<div class="pairs" id="pairs-0" hidden>(.*?)</div></div>', page, re.S).group(1)
    assert re.findall(r"test #(\d+)", panel)[0] == "0" and len(re.findall(r'class="pair"', panel)) <= 2
    assert "reported" in panel
    assert "label flipped from" in page  # training example 5 carries a flipped label


def test_the_page_is_self_contained_and_its_pictures_are_pngs(study: dict) -> None:
    page = render(study)
    assert "default-src 'none'" in page  # the browser may fetch nothing
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # every source inline, every link in-page
    pictures = page_data(page)["pictures"]
    keys = set(re.findall(r'data-picture="([^"]+)"', page))
    assert keys == set(pictures) and all(uri.startswith("data:image/png;base64,") for uri in pictures.values())
    assert len([k for k in keys if k.startswith("train-")]) == N_CLASSES * 3


def test_the_page_states_the_findings_with_their_numbers(study: dict) -> None:
    page = render(study)
    assert f"{N_PLANTED} of {N_TRAIN} training examples are memorized (mem ≥ 0.25, q ≤ 0.1" in page
    assert f"{N_PLANTED} high-influence pairs are reported" in page
    assert "Removing the 12 training examples with mem ≥ 0.5 leaves a test accuracy of 51.0%, against 91.0%" in page
    assert "40.0 points lower" in page and "beyond both 95% intervals" in page
    assert "shard store experiment 0123456789abcdef" in page and "data/06_models/shards/0123456789abcdef/" in page
    assert "1 min 15 s" in page  # the wall time, from the run's start


def test_table_data_shows_the_rows_values_in_place_of_images(study: dict) -> None:
    tables = dict(study["tables"])
    tables["examples"] = tables["examples"].assign(row_id=np.r_[np.arange(N_TRAIN) + 100, np.arange(N_TEST) + 500])
    page = render({**study, "tables": tables})
    assert 'class="thumb"' not in page and page_data(page)["pictures"] == {}
    assert "<p>row 100</p>" in page and "feature 36" not in page and "… 28 more" in page


def test_an_approximations_table_is_shown_when_given(study: dict) -> None:
    params = base_parameters()
    blocks = {name: checked_block(name, params[name]) for name in ("dataset", "sampling", "training", "reporting")}
    agreement = pd.DataFrame({"method": ["proxy", "trak"], "cost_models": [4.0, 12.5], "spearman_mem": [0.8, 0.6]})
    page = write_study_report({}, **study["tables"], **blocks, scoring=study["scoring"], approximation_agreement=agreement)
    section = re.search(r'<section id="approximations">(.*?)</section>', page, re.S).group(1)
    assert re.findall(r"<th>(.*?)</th>", section) == ["method", "cost_models", "spearman_mem"]
    assert "trak" in section and "12.500" in section
    assert 'id="approximations"' not in render(study)
    # before the approximation pipeline has run, the catalog hands the node an empty table
    empty = write_study_report({}, **study["tables"], **blocks, scoring=study["scoring"], approximation_agreement=pd.DataFrame())
    assert 'id="approximations"' not in empty


def test_the_removal_threshold_stated_is_the_one_nearest_the_memorization_cut_off() -> None:
    curve = pd.DataFrame({
        "threshold": np.repeat([0.1, 0.2, 0.3, 0.9], 2), "strategy": ["memorization", "random"] * 4,
        "n_removed": np.repeat([40, 30, 20, 5], 2), "train_fraction": 0.9, "repeat": 0,
        "test_accuracy": [0.80, 0.90, 0.81, 0.90, 0.82, 0.90, 0.85, 0.90],
    })
    assert findings._removal(curve, 0.25) == Removal(0.3, 20, 0.82, 0.90, 1)  # 0.2 and 0.3 as near: the higher
    assert findings._removal(curve, 0.8).threshold == 0.9


def test_the_summary_fits_in_five_lines_and_counts_as_the_selection_does(study: dict) -> None:
    tables = study["tables"]
    found = findings.find(
        tables["memorization_scores"], Selection.of(study["scoring"]), tables["reported_pairs"], 1000,
        tables["subset_model_runs"], tables["removal_curve"], tables["agreement"],
    )
    lines = findings.summary_lines(found)
    assert len(lines) == 5
    assert lines[1] == f"memorized: {N_PLANTED} of {N_TRAIN} training examples (mem ≥ 0.25, q ≤ 0.1)"
    assert lines[2] == f"pairs reported: {N_PLANTED} of 1,000 tested (infl ≥ 0.15, mem ≥ 0.25, q ≤ 0.1)"


def test_the_command_that_repeats_a_run() -> None:
    run = {"env": "smoke", "pipeline_names": ["scoring", "reporting"], "load_versions": {},
           "runtime_params": {"scoring": {"influence_threshold": 0.2, "selection": "paper"}}}
    assert kedro_command(run) == (
        "kedro run --env smoke --pipelines scoring,reporting --params "
        "scoring.influence_threshold=0.2,scoring.selection=paper"
    )
    assert kedro_command({"env": "local", "runtime_params": {}}) == "kedro run"


def test_the_page_of_a_default_sized_study_stays_under_5_mb() -> None:
    """The default study's sizes (4,000 / 1,000 28x28 images, 10 classes, the reporting
    parameters of conf/base) with noise for images, which compresses worst, and more pairs and
    memorized examples than the study has."""
    rng = np.random.default_rng(1)
    n_train, n_test = 4000, 1000
    train_labels, test_labels = np.arange(n_train) % 10, np.arange(n_test) % 10
    mem = np.where(rng.random(n_train) < 0.15, rng.uniform(0.25, 1, n_train), rng.uniform(-0.05, 0.1, n_train))
    scores = pd.DataFrame({"index": np.arange(n_train), "label": train_labels, "noisy": False, "mem": mem,
                           "mem_lo": mem - 0.1, "mem_hi": mem + 0.1, "mem_q": np.where(mem >= 0.25, 1e-4, 1.0)})
    train_index = rng.integers(0, n_train, 20_000)
    test_index = rng.integers(0, n_test, 20_000)
    pairs = pd.DataFrame({"train_index": train_index, "test_index": test_index, "infl": rng.uniform(0.1, 0.7, 20_000),
                          "q_value": 0.01}).drop_duplicates(["train_index", "test_index"])
    pairs = pairs.assign(infl_lo=pairs["infl"] - 0.1, infl_hi=pairs["infl"] + 0.1, mem=mem[pairs["train_index"]], mem_q=1e-4)
    pairs.attrs["n_tests"] = 101_200
    examples = pd.concat([
        pd.DataFrame({"split": split, "index": np.arange(n), "original_label": labels, "label": labels, "noisy": False})
        for split, n, labels in (("train", n_train, train_labels), ("test", n_test, test_labels))
    ], ignore_index=True)
    params = base_parameters()
    tables = {
        "examples": examples, "memorization_scores": scores, "influence_pairs": pairs,
        "train_images": rng.random((n_train, 1, 28, 28)).astype(np.float32),
        "test_images": rng.random((n_test, 1, 28, 28)).astype(np.float32),
        "reported_pairs": report_pairs(pairs, checked_block("scoring", params["scoring"])).head(1000),
        "subset_model_runs": pd.DataFrame({"metric_test_accuracy": rng.uniform(0.92, 0.95, 500), "param_subset_size": 2800, "param_precision": "fp32"}),
        "training_provenance": {"experiment": "e"},
        "removal_curve": pd.DataFrame(columns=["threshold", "strategy", "n_removed", "train_fraction", "repeat", "test_accuracy"]),
        "agreement": pd.DataFrame(), "convergence": pd.DataFrame(), "label_noise_detection": pd.DataFrame(),
    }
    blocks = {name: checked_block(name, params[name]) for name in ("dataset", "sampling", "training", "scoring", "reporting")}
    page = write_study_report({}, **tables, **blocks)
    data = page_data(page)
    assert len(data["rows"]) > 1500  # every memorized example and reported pair is in the table
    assert sum(key.startswith("train-") for key in data["pictures"]) == 120
    assert len(page.encode()) < 5_000_000
