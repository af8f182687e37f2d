"""Approximation: cheap memorization and influence scores, each measured against the study's
own exact estimate, with what it cost (in subset-model trainings and seconds)."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from longtail import figures
from longtail.approx.measure import Reference, agreement
from longtail.approx.methods import (
    RUN_METHODS,
    SUBSET_FAMILIES,
    FullRunPlan,
    SubsetModels,
    estimates_mem,
    full_run_estimates,
    subset_model_estimates,
    subset_model_seconds,
)
from longtail.approx.tables import influence_estimates, influence_table, memorization_estimates, memorization_table
from longtail.params import ApproximationParams, SamplingParams, ScoringParams, TrainingParams
from longtail.study import train_config, training_data

logger = logging.getLogger(__name__)


def time_subset_model(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    subset_masks: np.ndarray,
    training: TrainingParams,
) -> float:
    """Seconds to train and evaluate one subset model of the study (its first mask) in this
    process: the unit by which every method's extra passes are counted."""
    data = training_data(train_images, train_labels, test_images, test_labels)
    seconds = subset_model_seconds(data, subset_masks[0], train_config(training))
    logger.info("one subset model: %.2f s", seconds)
    return seconds


def estimate_from_subset_models(
    subset_masks: np.ndarray,
    train_correct: np.ndarray,
    test_correct: np.ndarray,
    train_margin: np.ndarray,
    test_margin: np.ndarray,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    subset_model_seconds: float,
    approximation: ApproximationParams,
    scoring: ScoringParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The subset-model families among ``approximation.methods`` from the study's first n
    models, for each n of ``approximation.model_counts`` the study has: the memorization table
    (``index, method, score, cost_models, seconds``) and the influence table (``train_index,
    test_index, method, score, cost_models, seconds``, ``approximation.per_test`` same-class
    pairs per test example at most)."""
    families = [m for m in approximation.methods if m in SUBSET_FAMILIES]
    skipped = [n for n in approximation.model_counts if n > len(subset_masks)]
    if families and skipped:
        logger.info("approximation: skipping n = %s, above the study's %d models", skipped, len(subset_masks))
    models = SubsetModels(subset_masks, train_correct, test_correct, train_margin, test_margin, (train_labels, test_labels))
    mem, infl = subset_model_estimates(
        models, families, approximation.model_counts, per_test=approximation.per_test,
        subset_model_seconds=subset_model_seconds, max_block_mb=scoring.max_block_mb,
    )
    return memorization_table(mem), influence_table(infl)


def estimate_from_full_runs(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    subset_model_seconds: float,
    training: TrainingParams,
    sampling: SamplingParams,
    approximation: ApproximationParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training-dynamics and attribution methods among ``approximation.methods``, from
    ``approximation.proxy_runs`` full-data runs of the study's configuration (seeded by
    ``approximation.seed``, weights kept at ``approximation.checkpoint_epochs``): the same two
    tables as ``estimate_from_subset_models``. No run is trained when none is asked for."""
    methods = [m for m in approximation.methods if m in RUN_METHODS]
    plan = FullRunPlan(approximation.proxy_runs, approximation.seed, approximation.checkpoint_epochs)
    mem, infl = full_run_estimates(
        training_data(train_images, train_labels, test_images, test_labels), train_config(training), methods, plan,
        per_test=approximation.per_test, subset_model_seconds=subset_model_seconds, subset_ratio=sampling.subset_ratio,
    )
    return memorization_table(mem), influence_table(infl)


def combine_approximations(
    subset_model_memorization: pd.DataFrame,
    full_run_memorization: pd.DataFrame,
    subset_model_influence: pd.DataFrame,
    full_run_influence: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every method's memorization rows, then every method's influence rows, in one table each."""
    memorization = pd.concat([subset_model_memorization, full_run_memorization], ignore_index=True)
    return memorization, pd.concat([subset_model_influence, full_run_influence], ignore_index=True)


def measure_approximations(
    approximate_memorization: pd.DataFrame,
    approximate_influence: pd.DataFrame,
    subset_masks: np.ndarray,
    train_correct: np.ndarray,
    test_correct: np.ndarray,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    scoring: ScoringParams,
) -> pd.DataFrame:
    """Each method against the exact estimate from all the study's models: R_mem (mem ≥
    ``scoring.memorization_threshold``) and R_pairs (same-class pairs with infl ≥
    ``scoring.influence_threshold`` whose training example is in R_mem); one row per method
    and target (``longtail.approx.measure.AGREEMENT_COLUMNS``)."""
    reference = Reference.from_models(
        subset_masks, train_correct, test_correct, (train_labels, test_labels),
        scoring.memorization_threshold, scoring.influence_threshold, scoring.max_block_mb,
    )
    mem = memorization_estimates(approximate_memorization, len(train_labels))
    table = agreement(reference, mem, influence_estimates(approximate_influence), {e.method for e in mem if estimates_mem(e.method)})
    logger.info("approximation: |R_mem| = %d, |R_pairs| = %d", int(reference.memorized.sum()), len(reference.pairs))
    for row in table.itertuples():
        figure = row.precision_at_r_mem if row.target == "memorization" else row.pair_recall_at_r_pairs
        logger.info("approximation %s (%s, cost %.3g models): %.3f", row.method, row.target, row.cost_models, figure)
    return table


def plot_approximations(approximation_agreement: pd.DataFrame) -> Figure:
    """Cost (log axis) against agreement, one point per method, the frontier drawn."""
    return figures.approximation_figure(approximation_agreement)


def summarize_approximations(approximation_agreement: pd.DataFrame) -> dict[str, Any]:
    """Each method's headline agreement for the parent MLflow run (undefined ones left out):
    precision at |R_mem| and pair recall at |R_pairs|."""
    headline = {}
    for row in approximation_agreement.itertuples():
        if row.target == "memorization":
            headline[f"{row.method}_precision_at_r_mem"] = row.precision_at_r_mem
        else:
            headline[f"{row.method}_pair_recall_at_r_pairs"] = row.pair_recall_at_r_pairs
    return {name: {"value": float(v), "step": 0} for name, v in headline.items() if math.isfinite(v)}
