"""Training: one model per subset mask, every model evaluated on every example."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from longtail.study import runs_table, train_config, train_models

logger = logging.getLogger(__name__)


def train_subset_models(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    subset_masks: np.ndarray,
    training: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, pd.DataFrame, dict[str, Any]]:
    """Train the subset models.

    Returns, each of shape (n_models, n_examples): correctness and true-label probability on
    the training split, then the same on the test split; the per-model runs table; and summary
    metrics for the parent MLflow run.
    """
    config = train_config(training)
    model_ids = np.arange(len(subset_masks))
    result = train_models(subset_masks, train_images, train_labels, test_images, test_labels, config, model_ids)
    runs = runs_table("subset", subset_masks, model_ids, result, config)
    accuracy = runs["metric_test_accuracy"]
    logger.info("subset models' test accuracy: mean %.4f (min %.4f, max %.4f)", accuracy.mean(), accuracy.min(), accuracy.max())
    summary = {
        "subset_models_test_accuracy_mean": {"value": float(accuracy.mean()), "step": 0},
        "subset_models_held_out_accuracy_mean": {"value": float(runs["metric_held_out_accuracy"].mean()), "step": 0},
    }
    return (
        result.correct["train"],
        result.true_prob["train"],
        result.correct["test"],
        result.true_prob["test"],
        runs,
        summary,
    )
