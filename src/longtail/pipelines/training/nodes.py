"""Training: one model per subset mask, trained shard by shard into a resumable store,
every model evaluated on every training and test example."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from longtail.diagnostics import subset_fit
from longtail.executors import make_executor, train_with_store
from longtail.nets.config import resolve_device
from longtail.params import SamplingParams, TrainingParams
from longtail.shards import ShardStore
from longtail.study import (
    TRAINING_RESULTS,
    experiment_identity,
    models_table,
    train_config,
    training_data,
    training_provenance,
)
from longtail.tracking import BackgroundLogger

logger = logging.getLogger(__name__)

# Models per stored shard when `training.models_per_shard` is auto: what a crash can lose, and
# how often progress and MLflow logging happen. How many of them train together in memory is
# `training.models_in_memory` (auto: what fits the device, longtail.nets.sizing).
STORE_SHARD = {"cpu": 64, "mps": 64, "cuda": 512}


def train_subset_models(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    subset_masks: np.ndarray,
    shard_store: Any,
    training: TrainingParams,
    sampling: SamplingParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Train every subset model not already in the shard store, logging each new model as an
    MLflow child run as its shard lands.

    Returns, each of shape (n_models, n_examples): correctness, true-label probability and
    logit margin (float32: true-class logit minus the largest other logit) on the training
    split, then the same on the test split; the per-model table; summary metrics for the
    parent MLflow run; and the results' provenance (fingerprints of the masks and arrays,
    experiment id), saved last so that it never vouches for arrays not yet saved.
    """
    config = train_config(training)
    data = training_data(train_images, train_labels, test_images, test_labels)
    if subset_masks.shape[1] != len(train_labels):
        raise ValueError(
            f"subset_masks has shape {subset_masks.shape} but the training split has {len(train_labels)} "
            f"examples; expected shape (n_models, {len(train_labels)}): rerun the sampling pipeline"
        )
    store = ShardStore(shard_store, experiment_identity(data, config, sampling))
    for folder in store.superseded():
        logger.warning(
            "%s holds models of this study in an older store format, without the margins this version records: "
            "they are trained again into %s (delete the old folder once done)", folder, store.folder,
        )
    per_shard = training.models_per_shard
    if per_shard == "auto":
        per_shard = STORE_SHARD[resolve_device(config.device).type]
    with make_executor(training.executor, training.scheduler_address, training.workers) as executor, BackgroundLogger() as tracker:
        arrays, trained = train_with_store(
            store,
            subset_masks,
            data,
            config,
            per_shard,
            executor,
            on_shard=lambda shard, masks: tracker.submit(
                models_table("subset", np.arange(shard.start, shard.stop), masks, shard.arrays, config), "subset"
            ),
            stale_after_s=training.claim_timeout_s,
        )
    runs = models_table("subset", np.arange(len(subset_masks)), subset_masks, arrays, config)
    accuracy = runs["metric_test_accuracy"]
    logger.info("subset models' test accuracy: mean %.4f (min %.4f, max %.4f)", accuracy.mean(), accuracy.min(), accuracy.max())
    fit = subset_fit(subset_masks, arrays["train_correct"])["mean_subset_accuracy"]
    problem = underfit_warning(fit, training, subset_masks)
    if problem:
        logger.warning(problem)
    summary = {
        "subset_models_test_accuracy_mean": float(accuracy.mean()),
        "subset_models_held_out_accuracy_mean": float(runs["metric_held_out_accuracy"].mean()),
        "subset_models_subset_accuracy_mean": fit,
        "models_trained_in_this_run": trained,
        "models_reused_from_store": len(subset_masks) - trained,
    }
    return (
        *(arrays[name] for name in TRAINING_RESULTS),
        runs,
        {name: {"value": value, "step": 0} for name, value in summary.items()},
        training_provenance(subset_masks, store.id, arrays),
    )


def optimizer_steps(training: TrainingParams, subset_masks: np.ndarray) -> tuple[int, int]:
    """(steps, batches per epoch) of one subset model of the typical subset size."""
    batches = math.ceil(round(float(subset_masks.sum(axis=1).mean())) / training.batch_size)
    return training.epochs * batches, batches


def underfit_warning(mean_subset_accuracy: float, training: TrainingParams, subset_masks: np.ndarray) -> str | None:
    """One line when the subset models fit less of their own training examples, on average,
    than ``training.min_subset_fit``: the figure, the steps they took and what to change
    (None when they fit). Memorization the models never reached cannot be measured: on a small
    table, 10 epochs can be 30 optimizer steps."""
    if mean_subset_accuracy >= training.min_subset_fit:
        return None
    steps, batches = optimizer_steps(training, subset_masks)
    return (
        f"the subset models fit only {mean_subset_accuracy:.1%} of their own training examples on average "
        f"(training.min_subset_fit={training.min_subset_fit}), so memorization they never reached cannot be "
        f"measured: each took {steps} optimizer steps ({training.epochs} epochs of {batches} batches of "
        f"{training.batch_size}); raise training.epochs (small data needs more epochs for as many steps) "
        "or lower training.batch_size"
    )
