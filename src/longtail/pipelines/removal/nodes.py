"""Removal: does dropping highly memorized examples cost more test accuracy than dropping random ones?"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from longtail.executors import make_executor, train_in_tasks
from longtail.params import RemovalParams, TrainingParams
from longtail.study import models_table, train_config, training_data
from longtail.tracking import RUN_NAME_COLUMN, log_model_runs

logger = logging.getLogger(__name__)

STRATEGIES = ("memorization", "random")


def removal_plan(mem: np.ndarray, thresholds: tuple[float, ...], repeats: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Training masks (one row per model) and the table describing each row.

    For threshold t the ``memorization`` rows keep every example with mem < t (an undefined
    mem counts as kept); the ``random`` rows drop as many examples, drawn uniformly by a
    generator seeded with (seed, threshold position, repeat).
    """
    n_train = len(mem)
    masks, rows = [], []
    for position, threshold in enumerate(thresholds):
        memorized = np.nan_to_num(mem, nan=-np.inf) >= threshold
        n_removed = int(memorized.sum())
        for repeat in range(repeats):
            random_removed = np.zeros(n_train, dtype=bool)
            rng = np.random.default_rng([seed, position, repeat])
            random_removed[rng.choice(n_train, size=n_removed, replace=False)] = True
            for strategy, removed in zip(STRATEGIES, (memorized, random_removed), strict=True):
                masks.append(~removed)
                rows.append((threshold, strategy, n_removed, 1 - n_removed / n_train, repeat))
    plan = pd.DataFrame(rows, columns=["threshold", "strategy", "n_removed", "train_fraction", "repeat"])
    return np.stack(masks), plan


def run_removal_experiment(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    memorization_scores: pd.DataFrame,
    removal: RemovalParams,
    training: TrainingParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train ``removal.repeats`` models on everything left after each removal (no subsampling)
    and measure their test accuracy, on ``training.executor`` (one task per threshold).
    Returns the removal curve and the per-model runs table."""
    masks, plan = removal_plan(memorization_scores["mem"].to_numpy(), removal.thresholds, removal.repeats, removal.seed)
    empty = (~masks).all(axis=1)
    if empty.any():
        threshold = plan.loc[np.flatnonzero(empty)[0], "threshold"]
        raise ValueError(
            f"removal.thresholds contains {threshold}, which removes every training example; "
            "allowed: thresholds that leave at least one example"
        )
    config = train_config(training, seed=removal.seed)
    data = training_data(train_images, train_labels, test_images, test_labels)
    with make_executor(training.executor, training.scheduler_address, training.workers) as executor:
        # one task per threshold: its models share a subset size, so they train as one batch
        arrays = train_in_tasks(executor, data, masks, config, task_size=2 * removal.repeats)
    curve = plan.assign(test_accuracy=arrays["test_correct"].mean(axis=1))
    model_ids = np.arange(len(masks))
    runs = models_table("removal", model_ids, masks, arrays, config)
    for column in ("threshold", "strategy", "repeat"):
        runs[f"param_{column}"] = plan[column].astype(str)
    runs[RUN_NAME_COLUMN] = (
        "removal-t" + plan["threshold"].map("{:.2f}".format) + "-" + plan["strategy"] + "-r" + plan["repeat"].astype(str)
    )
    log_model_runs(runs, "removal")
    _log_curve(curve)
    return curve, runs


def _log_curve(curve: pd.DataFrame) -> None:
    means = curve.groupby(["threshold", "strategy"])["test_accuracy"].mean().unstack()
    for threshold, row in means.iterrows():
        logger.info(
            "removal at mem >= %.2f: test accuracy %.4f (memorized removed) vs %.4f (random removed)",
            threshold, row["memorization"], row["random"],
        )
