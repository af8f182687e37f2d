"""Glue between the typed parameters and the torch library, shared by the training and
removal pipelines: the trainer's configuration, the experiment's identity in the shard
store, and per-model tables for tracking. Kedro-free."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from longtail.executors import TrainingData
from longtail.nets.ensemble import TrainConfig
from longtail.params import SamplingParams, TrainingParams
from longtail.shards import fingerprint
from longtail.tracking import model_runs_table

# Trainer settings that change how models are computed, not what they are: a store's shards
# are reused across them.
_EXECUTION_ONLY = ("device", "models_per_shard", "compile", "keep_models", "record_epochs", "threads")
STORE_FORMAT = 1


def train_config(params: TrainingParams, seed: int | None = None) -> TrainConfig:
    """The trainer's configuration from the ``training`` parameters (``seed`` overrides theirs)."""
    return TrainConfig(
        model=params.model,
        hidden_sizes=tuple(params.hidden_sizes),
        epochs=params.epochs,
        batch_size=params.batch_size,
        lr=params.lr,
        momentum=params.momentum,
        weight_decay=params.weight_decay,
        schedule=params.schedule,
        seed=params.seed if seed is None else seed,
        device=params.device,
        models_per_shard=None if params.models_per_shard == "auto" else params.models_per_shard,
        augment=params.augment,
        compile=params.compile,
    )


def training_data(
    train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray
) -> TrainingData:
    """The splits, with the number of classes (one more than the largest label in either)."""
    n_classes = int(max(train_labels.max(), test_labels.max())) + 1
    return TrainingData(train_images, train_labels, test_images, test_labels, n_classes)


def experiment_identity(data: TrainingData, config: TrainConfig, sampling: SamplingParams) -> dict[str, Any]:
    """What a stored shard's results depend on: the data, the subsets' distribution and the
    model and its training (not the device or how models are grouped into shards)."""
    trainer = {k: v for k, v in asdict(config).items() if k not in _EXECUTION_ONLY}
    return {
        "format": STORE_FORMAT,
        "data": fingerprint(data.train_images, data.train_labels, data.test_images, data.test_labels),
        "sampling": sampling.identity(),
        "training": trainer,
    }


def models_table(
    source: str, model_ids: np.ndarray, masks: np.ndarray, arrays: dict[str, np.ndarray], config: TrainConfig
) -> pd.DataFrame:
    """One row per trained model: its params and metrics (see ``longtail.tracking``)."""
    return model_runs_table(
        source, model_ids, masks, arrays["train_correct"], arrays["test_correct"], arrays["epoch_loss"], asdict(config)
    )
