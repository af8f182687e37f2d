"""Diagnostics nodes on small in-memory inputs, and the pipeline through Kedro's runner."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from sklearn.datasets import load_digits

from longtail.diagnostics import DETECTION_COLUMNS
from longtail.figures import NO_LABEL_NOISE_MESSAGE
from longtail.params import DiagnosticsParams, InvalidParameters, ScoringParams, TrainingParams
from longtail.pipelines.diagnostics import create_pipeline
from longtail.pipelines.diagnostics.nodes import (
    detect_label_noise,
    measure_agreement,
    measure_convergence,
    measure_subset_fit,
    plot_label_noise_detection,
    summarize_diagnostics,
    train_proxy_models,
)
from longtail.pipelines.scoring.nodes import score_memorization
from tests.conftest import checked_block

N_TRAIN, N_TEST, N_MODELS = 240, 60, 12
DIAGNOSTICS = DiagnosticsParams(seed=0, top_k=10, model_counts=(4, 8, 50), target_se=0.05, proxy_models=2)
SCORING = ScoringParams(influence_threshold=0.15, memorization_threshold=0.25, top_k=2, max_block_mb=1)
TRAINING = TrainingParams.model_validate({
    "model": "mlp", "hidden_sizes": [32], "epochs": 3, "batch_size": 32, "lr": 0.05, "momentum": 0.9,
    "weight_decay": 0.0005, "schedule": "linear", "seed": 0, "device": "cpu", "models_in_memory": 2,
})


@pytest.fixture(scope="module")
def inputs() -> dict[str, object]:
    """Digits with 10% flipped training labels, and subset models whose correctness leans on the
    subset (made up: the nodes under test only read the arrays)."""
    digits = load_digits()
    images = (digits.images / 16).astype(np.float32)[:, None][: N_TRAIN + N_TEST]
    labels = digits.target[: N_TRAIN + N_TEST].astype(np.int64)
    rng = np.random.default_rng(0)
    noisy = np.zeros(N_TRAIN, bool)
    noisy[rng.choice(N_TRAIN, N_TRAIN // 10, replace=False)] = True
    train_labels = np.where(noisy, (labels[:N_TRAIN] + 1) % 10, labels[:N_TRAIN])
    examples = pd.DataFrame({
        "split": ["train"] * N_TRAIN + ["test"] * N_TEST,
        "index": np.r_[np.arange(N_TRAIN), np.arange(N_TEST)],
        "label": np.r_[train_labels, labels[N_TRAIN:]],
        "noisy": np.r_[noisy, np.zeros(N_TEST, bool)],
    })
    masks = rng.random((N_MODELS, N_TRAIN)) < 0.7
    train_correct = rng.random((N_MODELS, N_TRAIN)) < np.where(noisy, 0.9 * masks, 0.8 + 0.2 * masks)
    return {
        "train_images": images[:N_TRAIN],
        "train_labels": train_labels,
        "test_images": images[N_TRAIN:],
        "test_labels": labels[N_TRAIN:],
        "examples": examples,
        "subset_masks": masks,
        "train_correct": train_correct,
        "train_true_prob": train_correct.astype(np.float32),
        "test_correct": rng.random((N_MODELS, N_TEST)) < 0.6 + 0.3 * masks[:, :N_TEST],
    }


@pytest.fixture(scope="module")
def proxies(inputs) -> tuple[pd.DataFrame, pd.DataFrame]:
    keys = ("train_images", "train_labels", "test_images", "test_labels", "examples")
    return train_proxy_models(*(inputs[k] for k in keys), TRAINING, DIAGNOSTICS)


@pytest.fixture(scope="module")
def memorization_scores(inputs) -> pd.DataFrame:
    keys = ("subset_masks", "train_correct", "train_true_prob", "examples")
    return score_memorization(*(inputs[k] for k in keys))


def test_proxy_models_score_every_training_example(inputs, proxies) -> None:
    scores, runs = proxies
    assert list(scores.columns) == ["index", "label", "noisy", "cumulative_accuracy", "mean_true_prob"]
    assert scores["index"].tolist() == list(range(N_TRAIN))
    assert scores[["cumulative_accuracy", "mean_true_prob"]].stack().between(0, 1).all()
    assert len(runs) == 2 and set(runs["source"]) == {"proxy"} and (runs["param_subset_size"] == N_TRAIN).all()
    by_noise = scores.groupby("noisy")[["cumulative_accuracy", "mean_true_prob"]].mean()
    assert (by_noise.loc[True] < by_noise.loc[False]).all()  # flipped labels are learned late, if at all


def test_label_noise_detection_reports_every_score(memorization_scores, proxies) -> None:
    table = detect_label_noise(memorization_scores, proxies[0], DIAGNOSTICS)
    assert list(table.columns) == DETECTION_COLUMNS
    assert table["score"].tolist() == ["mem", "mem_soft", "p_out", "cumulative_accuracy", "mean_true_prob"]
    assert (table["n_noisy"] == N_TRAIN // 10).all() and (table["k"] == 10).all()
    assert table.set_index("score").at["p_out", "roc_auc"] > 0.9  # the made-up models never get noisy labels right out of subset
    figure = plot_label_noise_detection(memorization_scores, proxies[0], table)
    assert len(figure.axes[0].get_lines()) == 6  # five scores and the random baseline


def test_without_label_noise_the_table_is_empty_and_the_figure_says_so(memorization_scores, proxies) -> None:
    clean_scores = memorization_scores.assign(noisy=False)
    table = detect_label_noise(clean_scores, proxies[0], DIAGNOSTICS)
    assert table.empty and list(table.columns) == DETECTION_COLUMNS
    figure = plot_label_noise_detection(clean_scores, proxies[0], table)
    assert NO_LABEL_NOISE_MESSAGE in [text.get_text() for text in figure.axes[0].texts]


def test_convergence_clips_the_counts_and_ends_with_the_agreement(inputs) -> None:
    arrays = [inputs[k] for k in ("subset_masks", "train_correct", "test_correct")]
    convergence = measure_convergence(*arrays, inputs["examples"], SCORING, DIAGNOSTICS)
    agreement = measure_agreement(convergence)
    assert convergence["n_models"].tolist() == [4, 8, N_MODELS]
    assert agreement["n_models"].tolist() == [N_MODELS] and agreement["models_per_half"].tolist() == [N_MODELS // 2]
    for column in ("spearman_mem", "jaccard_pairs", "controlled_pairs_both", "paper_pairs_replicated"):
        np.testing.assert_equal(convergence[column].iloc[-1], agreement[column].iloc[0])
    # the chosen selection (controlled by default) is the one the figure draws
    np.testing.assert_equal(convergence["jaccard_pairs"].to_numpy(), convergence["controlled_jaccard_pairs"].to_numpy())


def test_same_class_convergence_refuses_examples_without_a_label(inputs) -> None:
    """Unknown labels (−1) must not pair with each other as one class: the run stops and names them."""
    examples = inputs["examples"].copy()
    examples.loc[examples["split"] == "test", "label"] = -1
    arrays = [inputs[k] for k in ("subset_masks", "train_correct", "test_correct")]
    with pytest.raises(ValueError, match=f"0 training and {N_TEST} test examples have none"):
        measure_convergence(*arrays, examples, SCORING, DIAGNOSTICS)


@pytest.mark.parametrize("fits", [True, False])
def test_subset_fit_reports_how_much_of_their_own_examples_the_models_fit(inputs, caplog, fits: bool) -> None:
    masks, noisy = inputs["subset_masks"], inputs["examples"]["noisy"].to_numpy()[:N_TRAIN]
    keep = np.random.default_rng(1).random(masks.shape) < (1.0 if fits else 0.5)
    correct = (inputs["train_correct"] | masks) & keep  # every in-model right, or about half of them
    with caplog.at_level(logging.INFO, logger="longtail.pipelines.diagnostics.nodes"):
        table = measure_subset_fit(masks, correct, inputs["examples"], TRAINING)
    per_model = [correct[t][masks[t]].mean() for t in range(N_MODELS)]
    assert table.to_dict("records") == [{
        "n_models": N_MODELS,
        "mean_subset_accuracy": pytest.approx(np.mean(per_model)),
        "worst_model_subset_accuracy": pytest.approx(min(per_model)),
        "noisy_subset_accuracy": pytest.approx(np.mean([correct[masks[:, j], j].mean() for j in np.flatnonzero(noisy)])),
        "min_subset_fit": 0.99,
        "fits": fits,
        "steps_per_model": 3 * 6,  # 3 epochs of 6 batches of 32 (168 examples)
    }]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == (0 if fits else 1)
    assert ("raise training.epochs" in warned[0].getMessage()) if warned else "fit 100.0% of their own" in caplog.text


def test_summary_leaves_out_undefined_figures() -> None:
    detection = pd.DataFrame({"score": ["mem"], "roc_auc": [0.8], "average_precision": [np.nan]})
    metrics = summarize_diagnostics(
        detection,
        pd.DataFrame({"spearman_mem": [0.5], "jaccard_pairs": [np.nan], "paper_pairs_replicated": [0.75]}),
        pd.DataFrame({"models_for_target_se": [300.0]}),
        pd.DataFrame({"proxy": ["mean_true_prob"], "spearman_mem": [0.4]}),
        pd.DataFrame({"mean_subset_accuracy": [0.875], "noisy_subset_accuracy": [np.nan]}),
    )
    assert metrics == {
        "subset_fit_mean_accuracy": {"value": 0.875, "step": 0},
        "halves_spearman_mem": {"value": 0.5, "step": 0},
        "halves_paper_pairs_replicated": {"value": 0.75, "step": 0},
        "models_for_target_se": {"value": 300.0, "step": 0},
        "label_noise_roc_auc_mem": {"value": 0.8, "step": 0},
        "proxy_spearman_mem_mean_true_prob": {"value": 0.4, "step": 0},
    }


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("model_counts", [8, 4], "diagnostics.model_counts=[8, 4]: must be sorted"),
        ("model_counts", [1, 4], "diagnostics.model_counts=[1, 4]: every count must be at least 2"),
        ("target_se", 0, "diagnostics.target_se=0: Input should be greater than 0"),
        ("proxy_models", 0, "diagnostics.proxy_models=0"),
        ("top_k", 0, "diagnostics.top_k=0"),
        ("replication_share", 0, "diagnostics.replication_share=0"),
    ],
)
def test_bad_parameters_are_named(key: str, value: object, expected: str) -> None:
    with pytest.raises(InvalidParameters) as error:
        checked_block("diagnostics", {**DIAGNOSTICS.model_dump(), key: value})
    assert expected in str(error.value)


def test_pipeline_runs_on_an_in_memory_catalog(inputs, memorization_scores) -> None:
    datasets = {name: MemoryDataset(value) for name, value in inputs.items()}
    datasets["memorization_scores"] = MemoryDataset(memorization_scores)
    for name, value in (("training", TRAINING), ("scoring", SCORING), ("diagnostics", DIAGNOSTICS)):
        datasets[f"params:{name}"] = MemoryDataset(value)
    outputs = SequentialRunner().run(create_pipeline(), DataCatalog(datasets))
    assert set(outputs) == {"proxy_model_runs", "label_noise_detection_figure", "convergence_figure", "diagnostics_metrics"}
    metrics = outputs["diagnostics_metrics"].load()  # fed by every table of the pipeline
    assert {"label_noise_roc_auc_mem", "halves_spearman_mem", "proxy_spearman_mem_mean_true_prob", "subset_fit_mean_accuracy"} <= set(metrics)
    assert len(outputs["proxy_model_runs"].load()) == 2
