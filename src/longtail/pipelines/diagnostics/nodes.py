"""Diagnostics: how far to trust the scores (planted label errors, agreement between halves of
the models, convergence) and whether a learning-speed proxy from a few runs would do."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from longtail import diagnostics as stats
from longtail import figures
from longtail.nets.ensemble import train_ensemble
from longtail.params import DiagnosticsParams, ScoringParams, TrainingParams
from longtail.study import models_table, train_config, training_data
from longtail.tracking import log_model_runs

from ..scoring.nodes import same_class_labels
from ..training.nodes import optimizer_steps, underfit_warning

logger = logging.getLogger(__name__)

SUBSET_SCORES = ("mem", "mem_soft", "p_out")
PROXIES = ("cumulative_accuracy", "mean_true_prob")


def train_proxy_models(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    examples: pd.DataFrame,
    training: TrainingParams,
    diagnostics: DiagnosticsParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train ``diagnostics.proxy_models`` models on the whole training split (the ``training``
    parameters, seeded by ``diagnostics.seed``), recording at the end of every epoch how each
    training example is classified. Returns the learning-speed proxies of every training example
    (``index``, ``label``, ``noisy``, ``cumulative_accuracy``, ``mean_true_prob``) and the
    per-model runs table (also logged as MLflow child runs, source ``proxy``)."""
    config = replace(train_config(training, seed=diagnostics.seed), record_epochs=True)
    data = training_data(train_images, train_labels, test_images, test_labels)
    masks = np.ones((diagnostics.proxy_models, len(train_labels)), dtype=bool)
    model_ids = np.arange(diagnostics.proxy_models)
    result = train_ensemble(
        train_images, train_labels, masks, model_ids, config, data.n_classes,
        eval_sets={"train": (train_images, train_labels), "test": (test_images, test_labels)},
    )
    arrays = {"train_correct": result.correct["train"], "test_correct": result.correct["test"], "epoch_loss": result.epoch_loss}
    runs = models_table("proxy", model_ids, masks, arrays, config)
    log_model_runs(runs, "proxy")
    train = examples[examples["split"] == "train"].sort_values("index")[["index", "label", "noisy"]]
    proxies = stats.learning_speed(result.epoch_correct["train"], result.epoch_true_prob["train"])
    logger.info("proxy models' test accuracy: %.4f", result.correct["test"].mean())
    return pd.concat([train.reset_index(drop=True), proxies], axis=1), runs


def _with_proxies(memorization_scores: pd.DataFrame, proxy_scores: pd.DataFrame) -> pd.DataFrame:
    """``index``, ``noisy``, the subset models' scores and the proxies, one row per training example."""
    return memorization_scores[["index", "noisy", *SUBSET_SCORES]].merge(
        proxy_scores[["index", *PROXIES]], on="index", validate="one_to_one"
    )


def _suspicion_scores(memorization_scores: pd.DataFrame, proxy_scores: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """``noisy`` and the scores compared for label-error detection."""
    merged = _with_proxies(memorization_scores, proxy_scores)
    return merged["noisy"].to_numpy(dtype=bool), merged[[*SUBSET_SCORES, *PROXIES]]


def detect_label_noise(
    memorization_scores: pd.DataFrame, proxy_scores: pd.DataFrame, diagnostics: DiagnosticsParams
) -> pd.DataFrame:
    """One row per score (mem, mem_soft, p_out, the proxies): ROC AUC, average precision and
    precision among the most suspicious examples at finding the planted label errors. Empty
    (same columns) when no label was flipped."""
    table = stats.detection_table(*_suspicion_scores(memorization_scores, proxy_scores), diagnostics.top_k)
    for row in table.itertuples():
        logger.info("label-error detection by %s: ROC AUC %.3f, AP %.3f", row.score, row.roc_auc, row.average_precision)
    return table


def plot_label_noise_detection(
    memorization_scores: pd.DataFrame, proxy_scores: pd.DataFrame, label_noise_detection: pd.DataFrame
) -> Figure:
    """Precision-recall curves of every score at finding the planted label errors."""
    noisy, scores = _suspicion_scores(memorization_scores, proxy_scores)
    curves = stats.precision_recall_table(noisy, scores)
    return figures.precision_recall_figure(curves, label_noise_detection, float(noisy.mean()))


def _reporting(scoring: ScoringParams, diagnostics: DiagnosticsParams, examples: pd.DataFrame) -> stats.Reporting:
    labels = same_class_labels(examples) if scoring.pairs == "same_class" else None
    return stats.Reporting(
        scoring.influence_threshold, scoring.memorization_threshold, scoring.fdr, labels, scoring.max_block_mb,
        diagnostics.replication_share,
    )


def measure_agreement(convergence: pd.DataFrame) -> pd.DataFrame:
    """Agreement between two disjoint halves of all the subset models (seeded by
    ``diagnostics.seed``), for both selections: the Spearman correlation of mem, the lists each
    half reports, their Jaccard overlaps and the share of half A's that replicate in half B
    (one row). It is the last row of ``convergence``, which already estimated it from all the
    models."""
    row = convergence.iloc[[-1]].drop(columns=_SE_COLUMNS).reset_index(drop=True)
    logger.info(
        "agreement between halves of %d models: Spearman of mem %.3f; controlled pairs: Jaccard %.3f, "
        "%.0f%% replicate; paper pairs: Jaccard %.3f, %.0f%% replicate",
        row.at[0, "models_per_half"], row.at[0, "spearman_mem"], row.at[0, "controlled_jaccard_pairs"],
        100 * row.at[0, "controlled_pairs_replicated"], row.at[0, "paper_jaccard_pairs"],
        100 * row.at[0, "paper_pairs_replicated"],
    )
    return row


_SE_COLUMNS = ["median_mem_se", "median_mem_se_memorized", "target_se", "models_for_target_se"]


def measure_convergence(
    subset_masks: np.ndarray,
    train_correct: np.ndarray,
    test_correct: np.ndarray,
    examples: pd.DataFrame,
    scoring: ScoringParams,
    diagnostics: DiagnosticsParams,
) -> pd.DataFrame:
    """Standard error of mem and agreement between halves for each of ``diagnostics.model_counts``
    (those the study has, and all its models), and the number of models extrapolated to reach
    ``diagnostics.target_se``. ``jaccard_pairs`` repeats the chosen selection's (``scoring.selection``)
    Jaccard of pairs, the one the convergence figure draws."""
    counts = stats.model_counts(diagnostics.model_counts, len(subset_masks))
    how = _reporting(scoring, diagnostics, examples)
    table = stats.convergence(subset_masks, train_correct, test_correct, counts, diagnostics.seed, diagnostics.target_se, how)
    table["jaccard_pairs"] = table[f"{scoring.selection}_jaccard_pairs"]
    last = table.iloc[-1]
    logger.info(
        "median mem_se of memorized examples %.4f with %d models; about %s models for %.3f",
        last["median_mem_se_memorized"], last["n_models"], last["models_for_target_se"], diagnostics.target_se,
    )
    return table


def plot_convergence(convergence: pd.DataFrame) -> Figure:
    """Standard error and agreement between halves against the number of models."""
    return figures.convergence_figure(convergence)


def compare_proxies(memorization_scores: pd.DataFrame, proxy_scores: pd.DataFrame, scoring: ScoringParams) -> pd.DataFrame:
    """One row per proxy: its Spearman correlation with mem and mem_soft, and how well it ranks
    the memorized examples (mem ≥ ``scoring.memorization_threshold``) first."""
    merged = _with_proxies(memorization_scores, proxy_scores)
    table = stats.proxy_agreement(merged, merged[list(PROXIES)], scoring.memorization_threshold)
    for row in table.itertuples():
        logger.info("proxy %s: Spearman with mem %.3f", row.proxy, row.spearman_mem)
    return table


def measure_subset_fit(
    subset_masks: np.ndarray, train_correct: np.ndarray, examples: pd.DataFrame, training: TrainingParams
) -> pd.DataFrame:
    """One row: how much of their own training examples the subset models fit
    (``longtail.diagnostics.subset_fit``: the mean and the worst model, and the flipped
    examples' mean p_in), against ``training.min_subset_fit``, with the optimizer steps each
    model took. Logged as a warning saying what to change when they fall short."""
    train = examples[examples["split"] == "train"].sort_values("index")
    fit = stats.subset_fit(subset_masks, train_correct, train["noisy"].to_numpy(dtype=bool))
    problem = underfit_warning(fit["mean_subset_accuracy"], training, subset_masks)
    if problem:
        logger.warning(problem)
    else:
        logger.info("the subset models fit %.1f%% of their own training examples on average", 100 * fit["mean_subset_accuracy"])
    return pd.DataFrame([{
        "n_models": len(subset_masks), **fit, "min_subset_fit": training.min_subset_fit, "fits": problem is None,
        "steps_per_model": optimizer_steps(training, subset_masks)[0],
    }])


def summarize_diagnostics(
    label_noise_detection: pd.DataFrame,
    agreement: pd.DataFrame,
    convergence: pd.DataFrame,
    proxy_agreement: pd.DataFrame,
    subset_fit: pd.DataFrame,
) -> dict[str, Any]:
    """Headline figures for the parent MLflow run (undefined ones left out)."""
    headline = {
        "subset_fit_mean_accuracy": subset_fit["mean_subset_accuracy"].iloc[0],
        "subset_fit_noisy_accuracy": subset_fit["noisy_subset_accuracy"].iloc[0],
        "halves_spearman_mem": agreement["spearman_mem"].iloc[0],
        "halves_jaccard_pairs": agreement["jaccard_pairs"].iloc[0],
        **{f"halves_{column}": agreement[column].iloc[0] for column in agreement if column.endswith("_replicated")},
        "models_for_target_se": convergence["models_for_target_se"].iloc[-1],
    }
    for row in label_noise_detection.itertuples():
        headline[f"label_noise_roc_auc_{row.score}"] = row.roc_auc
        headline[f"label_noise_average_precision_{row.score}"] = row.average_precision
    for row in proxy_agreement.itertuples():
        headline[f"proxy_spearman_mem_{row.proxy}"] = row.spearman_mem
    return {name: {"value": float(v), "step": 0} for name, v in headline.items() if math.isfinite(v)}
